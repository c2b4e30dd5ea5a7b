"""Every kustomization renders with a real kustomize and is valid, strictly, against the
Kubernetes schemas of the oldest release we support and of kubectl's own (offline)."""

import base64
import copy

import kubernetes_validate
import pytest

from tests.k8s.manifests import (
    K8S,
    OVERLAYS,
    TARGETS,
    RenderError,
    copy_tree,
    find,
    of_kind,
    pod_template,
    pods_selected,
    ref,
    render,
    with_prod_edge,
    workloads,
)

pytestmark = pytest.mark.k8s

# 1.30: the oldest release the manifests target (autoscaling/v2 behaviour, policy/v1,
# matchLabelKeys in topology spread). 1.36: the release of the pinned kubectl.
KUBERNETES_VERSIONS = ("1.30.0", "1.36.0")


# Custom resources have no schema in kubernetes-validate: the Gateway API's are checked against
# their own in test_gateway.py.
CRD_GROUPS = ("gateway.networking.k8s.io", "gateway.networking.x-k8s.io")


def schema_errors(docs: list[dict], version: str) -> list[str]:
    errors = []
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{ref(doc)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{ref(doc)}: {exc.message}")
    return errors


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_strictly(rendered, target, version):
    docs = rendered[target]
    assert docs, f"{target} rendered nothing"
    assert schema_errors(docs, version) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_prod_with_the_optional_ingress_validates_strictly(tmp_path, version):
    docs = render(with_prod_edge(copy_tree(tmp_path, with_prod_secrets=True), "ingress"))
    assert of_kind(docs, "Ingress") and not of_kind(docs, "HTTPRoute")
    assert schema_errors(docs, version) == []


def test_strict_validation_rejects_an_unknown_field(rendered):
    """The schema check would catch a typo, i.e. it really is strict."""
    api = copy.deepcopy(find(rendered["dev"], "Deployment", "api"))
    pod_template(api)["spec"]["containers"][0]["imagePullPolcy"] = "IfNotPresent"
    assert schema_errors([api], KUBERNETES_VERSIONS[0]) != []


def test_prod_does_not_render_without_its_own_secrets(tmp_path):
    """The example Secret of the base can never reach production by omission."""
    tree = copy_tree(tmp_path, with_prod_secrets=False)
    with pytest.raises(RenderError, match="secrets.env"):
        render(tree / TARGETS["prod"])


def _secret_values(docs, name):
    secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"].startswith(name + "-"))
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def test_prod_secret_is_the_operators_not_the_example(rendered):
    dev = _secret_values(rendered["dev"], "postwire-secrets")
    prod = _secret_values(rendered["prod"], "postwire-secrets")
    assert set(prod) >= {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    assert all(prod[k] != dev[k] for k in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"))


@pytest.mark.parametrize("target", TARGETS)
def test_every_reference_resolves(rendered, target):
    """Generated (hash-suffixed) ConfigMaps and Secrets, Services, PDBs, HPAs and
    NetworkPolicies all point at something that exists in the same render."""
    docs = rendered[target]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    # The load-test Job runs beside an overlay, whose objects are not in its own render.
    external_ok = {("Service", "nginx")} if target == "loadtest" else set()
    problems = []
    for w in workloads(docs):
        spec = pod_template(w)["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            for source in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source and (kind, source[key]["name"]) not in names:
                        problems.append(f"{ref(w)} {c['name']}: envFrom {kind} {source[key]['name']}")
            for item in c.get("env", []):
                vf = item.get("valueFrom", {})
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in vf and (kind, vf[key]["name"]) not in names:
                        problems.append(f"{ref(w)} {c['name']}: {item['name']} from {kind} {vf[key]['name']}")
        account = spec.get("serviceAccountName")
        if account and ("ServiceAccount", account) not in names:
            problems.append(f"{ref(w)}: ServiceAccount {account}")
    for kind in ("Service", "PodDisruptionBudget"):
        for d in of_kind(docs, kind):
            selector = d["spec"]["selector"]
            if not pods_selected(docs, selector):
                problems.append(f"{ref(d)} selects no pod")
    for np in of_kind(docs, "NetworkPolicy"):
        # (the load test's nginx-from-loadtest policy selects the overlay's nginx)
        selector = np["spec"]["podSelector"]
        if selector and not pods_selected(docs, selector) and target != "loadtest":
            problems.append(f"{ref(np)} selects no pod")
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        t = hpa["spec"]["scaleTargetRef"]
        if (t["kind"], t["name"]) not in names:
            problems.append(f"{ref(hpa)} scales missing {t['kind']}/{t['name']}")
    for ing in of_kind(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]["name"]
                if ("Service", svc) not in names | external_ok:
                    problems.append(f"{ref(ing)} routes {p['path']} to missing Service {svc}")
    for route in of_kind(docs, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for backend in rule.get("backendRefs", []):
                if backend.get("kind", "Service") == "Service" and ("Service", backend["name"]) not in names:
                    problems.append(f"{ref(route)} routes to missing Service {backend['name']}")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_ports_reach_a_container_port(rendered, overlay):
    docs = rendered[overlay]
    for svc in of_kind(docs, "Service"):
        for w in pods_selected(docs, svc["spec"]["selector"]):
            ports = [p for c in pod_template(w)["spec"]["containers"] for p in c.get("ports", [])]
            for sp in svc["spec"]["ports"]:
                target = sp.get("targetPort", sp["port"])
                assert any(target in (p["containerPort"], p.get("name")) for p in ports), (ref(svc), sp, ref(w))


# Fields the API server refuses to change on an existing object: a render whose value differs
# from the one applied before fails `kubectl apply` with "field is immutable".
IMMUTABLE = {
    "Job": [("spec", "template"), ("spec", "selector")],
    "Deployment": [("spec", "selector")],
    "StatefulSet": [("spec", "selector"), ("spec", "serviceName"), ("spec", "volumeClaimTemplates")],
    "DaemonSet": [("spec", "selector")],
}


def _field(doc: dict, path: tuple[str, ...]):
    for key in path:
        doc = (doc or {}).get(key)
    return doc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_config_change_and_an_image_bump_re_apply_cleanly(tmp_path, overlay):
    """Re-rendering after an operator changes a setting and bumps the image touches no immutable
    field of any object that keeps its name (what the migrate Job used to do)."""
    before = render(copy_tree(tmp_path / "before", with_prod_secrets=True) / "overlays" / overlay)
    root = copy_tree(tmp_path / "after", with_prod_secrets=True)
    config = root / "base" / "config.env"
    config.write_text(config.read_text() + "\nPOSTWIRE_WS_DRAIN_SECONDS=12\n")
    for kustomization in (root / "base" / "kustomization.yaml", root / "overlays" / overlay / "kustomization.yaml"):
        kustomization.write_text(kustomization.read_text().replace("newTag: 0.1.0", "newTag: 0.1.1"))
    after = render(root / "overlays" / overlay)
    assert before != after  # the change did change the render
    old = {ref(d): d for d in before}
    changed = []
    for doc in after:
        previous = old.get(ref(doc))
        for path in IMMUTABLE.get(doc["kind"], []) if previous else []:
            if _field(previous, path) != _field(doc, path):
                changed.append(f"{ref(doc)}: {'.'.join(path)}")
    assert not changed, changed


def test_the_monitoring_component_scrapes_api_and_ws_and_carries_the_same_alerts(tmp_path):
    """k8s/components/monitoring on top of the dev overlay: its PodMonitor selects every api and ws
    pod by a port they declare, and its PrometheusRule holds exactly monitoring/prometheus/rules.yml
    (which `promtool` checks and a real Prometheus evaluates in the stack tier). The Operator's
    CRD schemas are not available offline, so these two objects are checked here, not by schema."""
    import yaml

    root = copy_tree(tmp_path, with_prod_secrets=False)
    dev = root / "overlays" / "dev" / "kustomization.yaml"  # added as the README says
    dev.write_text(dev.read_text().replace("components:\n", "components:\n  - ../../components/monitoring\n", 1))
    docs = render(root / "overlays" / "dev")
    monitor = find(docs, "PodMonitor", "postwire")
    assert monitor["metadata"]["namespace"] == "postwire" and monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for name in ("api", "ws"):
        template = pod_template(find(docs, "Deployment", name))
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == name
        declared = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert declared & ports, (name, declared, ports)
    rule = find(docs, "PrometheusRule", "postwire")
    rules_file = K8S.parent / "monitoring" / "prometheus" / "rules.yml"
    assert rule["spec"]["groups"] == yaml.safe_load(rules_file.read_text())["groups"]
