"""The Gateway API edge (k8s/components/gateway-api, prod's default): rendered Gateway API objects
validate against the schemas of @kubernetes-models/gateway-api 2.0.0 (generated from Gateway API
v1.5.1; tests/k8s/gateway, installed by bin/setup-dev), the HTTPRoute reaches the nginx Service of
the same render without ever timing out a WebSocket, and the Ingress stays one line away."""

import copy
import json
import re
import shutil
import subprocess

import pytest

from tests.k8s.manifests import (
    REPO,
    TARGETS,
    copy_tree,
    find,
    of_kind,
    pods_selected,
    ref,
    render,
    with_prod_edge,
)

pytestmark = pytest.mark.k8s

VALIDATOR = REPO / "tests" / "k8s" / "gateway"
PACKAGE = VALIDATOR / "node_modules" / "@kubernetes-models" / "gateway-api" / "package.json"
GATEWAY_GROUPS = ("gateway.networking.k8s.io", "gateway.networking.x-k8s.io")
SOCKET_PATHS = {"/graphql", "/wsgraphql"}  # /graphql carries graphql-ws sockets too (nginx)
PUBLIC_PATHS = SOCKET_PATHS | {"/csrf"}  # what components/ingress publishes


def gateway_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["apiVersion"].split("/")[0] in GATEWAY_GROUPS]


def validate(objects: list[dict]) -> dict[str, list[str]]:
    """ref → schema errors, from tests/k8s/gateway/validate.mjs. Fails (never skips) without
    Node.js or the pinned package: this is the only schema check these objects get."""
    node = shutil.which("node")
    if not node:
        pytest.fail("Node.js is not installed: the Gateway API schema check needs it (apt-get install nodejs npm)")
    if not PACKAGE.exists():
        pytest.fail(
            "@kubernetes-models/gateway-api is not installed: run bin/setup-dev (or: cd tests/k8s/gateway && npm ci)"
        )
    version = json.loads(PACKAGE.read_text())["version"]
    assert version == "2.0.0", f"tests/k8s/gateway has @kubernetes-models/gateway-api {version}, not the pinned 2.0.0"
    result = subprocess.run(
        [node, str(VALIDATOR / "validate.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode not in (0, 1):
        pytest.fail(f"validate.mjs failed ({result.returncode}):\n{result.stderr}")
    results = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["ref"] for r in results] == [ref(o) for o in objects], result.stderr
    return {r["ref"]: r["errors"] for r in results}


def seconds(duration: str) -> float:
    """A Gateway API Duration (GEP-2257: 1h30m, 500ms, 0s) in seconds."""
    assert re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", duration), duration
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(h|ms|m|s)", duration))


def routes(docs: list[dict]) -> list[dict]:
    return of_kind(docs, "HTTPRoute")


def prefixes(rule: dict) -> set[str]:
    return {m["path"]["value"] for m in rule.get("matches", []) if m.get("path", {}).get("type") == "PathPrefix"}


@pytest.fixture(scope="session")
def prod_with_ingress(tmp_path_factory) -> list[dict]:
    root = copy_tree(tmp_path_factory.mktemp("prod-ingress"), with_prod_secrets=True)
    return render(with_prod_edge(root, "ingress"))


# --- the schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_gateway_api_objects_validate_against_their_schemas(rendered, target):
    objects = gateway_objects(rendered[target])
    if target == "prod":
        assert [ref(o) for o in objects] == ["HTTPRoute/postwire"], "prod's default edge is the HTTPRoute"
    errors = validate(objects) if objects else {}
    assert {r: e for r, e in errors.items() if e} == {}


BREAKAGES = {
    "a timeout that is no Duration": lambda r: r["spec"]["rules"][0]["timeouts"].update(request="forever"),
    "a parentRef without a name": lambda r: r["spec"]["parentRefs"][0].pop("name"),
    "a backend port by name": lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(port="http"),
    "an unknown path match type": lambda r: r["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"),
    "a misspelt field": lambda r: r["spec"]["rules"][0].update(timeout=r["spec"]["rules"][0].pop("timeouts")),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_schema_check_rejects_a_broken_route(rendered, breakage):
    """The check really validates: each of these is refused (the last one only by the unknown-field
    check validate.mjs adds, as the generated schemas accept any extra field)."""
    route = copy.deepcopy(find(rendered["prod"], "HTTPRoute", "postwire"))
    BREAKAGES[breakage](route)
    assert validate([route])[ref(route)] != []


# --- what the route does ----------------------------------------------------------------------


def test_the_route_reaches_the_nginx_service_of_the_same_render(rendered):
    docs = rendered["prod"]
    (route,) = routes(docs)
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for rule in route["spec"]["rules"]:
        for backend in rule["backendRefs"]:
            assert backend.get("group", "") == "" and backend.get("kind", "Service") == "Service", backend
            # Same namespace as the route: no ReferenceGrant needed.
            assert backend.get("namespace", route["metadata"]["namespace"]) == route["metadata"]["namespace"]
            service = services.get(backend["name"])
            assert service is not None, f"{ref(route)} routes {prefixes(rule)} to missing Service {backend['name']}"
            assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}, (backend, service["spec"]["ports"])
            selected = {p["metadata"]["name"] for p in pods_selected(docs, service["spec"]["selector"])}
            assert selected == {"nginx"}, f"{backend['name']} is not the nginx edge: it selects {selected}"


def test_websockets_are_never_timed_out_and_http_timeouts_are_consistent(rendered):
    """Gateway API: `timeouts.request` bounds the whole request, and a zero duration disables a
    timeout. A socket path must disable both; elsewhere backendRequest ≤ request (a CEL rule
    of the CRD, which the schema check does not evaluate)."""
    (route,) = routes(rendered["prod"])
    covered = set()
    for rule in route["spec"]["rules"]:
        timeouts = rule.get("timeouts", {})
        request, backend = timeouts.get("request"), timeouts.get("backendRequest")
        if prefixes(rule) & SOCKET_PATHS:
            covered |= prefixes(rule) & SOCKET_PATHS
            assert request is not None and seconds(request) == 0, (prefixes(rule), timeouts)
            assert backend is not None and seconds(backend) == 0, (prefixes(rule), timeouts)
        elif request and backend and seconds(request) > 0:
            assert seconds(backend) <= seconds(request), timeouts
    assert covered == SOCKET_PATHS


def test_the_route_publishes_what_the_ingress_did_on_the_same_host(rendered, prod_with_ingress):
    (route,) = routes(rendered["prod"])
    (ingress,) = of_kind(prod_with_ingress, "Ingress")
    assert {p for rule in route["spec"]["rules"] for p in prefixes(rule)} == PUBLIC_PATHS
    assert {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]} == PUBLIC_PATHS
    assert route["spec"]["hostnames"] == [r["host"] for r in ingress["spec"]["rules"]]


def test_the_route_attaches_to_the_operators_gateway_whose_proxies_may_reach_nginx(rendered):
    docs = rendered["prod"]
    (route,) = routes(docs)
    (parent,) = route["spec"]["parentRefs"]
    # kustomize's `namespace: postwire` must not have rewritten the Gateway's namespace.
    assert parent["kind"] == "Gateway" and parent["namespace"] != "postwire" and parent["sectionName"]
    policy = find(docs, "NetworkPolicy", "nginx-from-ingress")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}]
    assert [p["port"] for p in rule["ports"]] == [8080]


def test_the_ingress_is_one_line_away(prod_with_ingress):
    """Switching prod's edge line to components/ingress gives the Ingress (and ingress-nginx's
    namespace in the policy) and no Gateway API object."""
    assert gateway_objects(prod_with_ingress) == []
    assert len(of_kind(prod_with_ingress, "Ingress")) == 1
    policy = find(prod_with_ingress, "NetworkPolicy", "nginx-from-ingress")
    peers = [peer for r in policy["spec"]["ingress"] for peer in r["from"]]
    assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
