"""The policy lint, written as tests: what every rendered overlay must hold beyond schema
validity. Each rule names the offenders, so a failure says what to fix."""

import pytest

from tests.k8s.manifests import (
    OVERLAYS,
    TARGETS,
    containers,
    copy_tree,
    find,
    hpa_for,
    of_kind,
    pod_template,
    pods_selected,
    ref,
    render,
    replicas,
    selects,
    with_prod_edge,
    workloads,
)

pytestmark = pytest.mark.k8s

# The "restricted" Pod Security Standard, which the namespace enforces, allows these.
RESTRICTED_VOLUMES = {
    "emptyDir",
    "persistentVolumeClaim",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
}


def each_container(docs):
    for w in workloads(docs):
        for kind, c in containers(w):
            yield w, kind, c


def effective(w, c, key):
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    value = c.get("securityContext", {}).get(key)
    return value if value is not None else pod_template(w)["spec"].get("securityContext", {}).get(key)


@pytest.fixture(params=list(TARGETS))
def docs(request, rendered):
    return rendered[request.param]


def test_every_container_has_requests_and_limits(docs):
    missing = [
        f"{ref(w)} {c['name']}"
        for w, _, c in each_container(docs)
        if any(
            c.get("resources", {}).get(level, {}).get(res) is None
            for level in ("requests", "limits")
            for res in ("cpu", "memory")
        )
    ]
    assert missing == []


def test_long_running_containers_have_startup_readiness_and_liveness_probes(docs):
    missing = [
        f"{ref(w)} {c['name']}: {probe}"
        for w, kind, c in each_container(docs)
        if w["kind"] != "Job" and kind == "main"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        if probe not in c
    ]
    assert missing == []


def test_containers_run_unprivileged_on_a_read_only_root(docs):
    problems = []
    for w, _, c in each_container(docs):
        where = f"{ref(w)} {c['name']}"
        if effective(w, c, "runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot")
        if not effective(w, c, "runAsUser"):
            problems.append(f"{where}: runAsUser (numeric, non-zero)")
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem")
        if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation")
        if c.get("securityContext", {}).get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities.drop ALL")
        if (effective(w, c, "seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile RuntimeDefault")
        if c.get("securityContext", {}).get("privileged"):
            problems.append(f"{where}: privileged")
    assert problems == []


def test_pods_use_only_restricted_volumes_and_mount_tmp(docs):
    problems = []
    for w in workloads(docs):
        spec = pod_template(w)["spec"]
        for v in spec.get("volumes", []):
            kinds = set(v) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                problems.append(f"{ref(w)} volume {v['name']}: {kinds}")
        for _kind, c in containers(w):
            if "/tmp" not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
                problems.append(f"{ref(w)} {c['name']}: no writable /tmp on a read-only root")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{ref(w)}: host namespaces")
    assert problems == []


def test_service_account_tokens_and_service_links_are_off(docs):
    problems = [
        ref(w)
        for w in workloads(docs)
        if pod_template(w)["spec"].get("automountServiceAccountToken") is not False
        or pod_template(w)["spec"].get("enableServiceLinks") is not False
    ]
    assert problems == []


def test_images_are_pinned_never_latest(docs):
    problems = []
    for w, _, c in each_container(docs):
        image = c["image"]
        last = image.split("@")[0].rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            problems.append(f"{ref(w)} {c['name']}: {image}")
        if c.get("imagePullPolicy") == "Always":
            problems.append(f"{ref(w)} {c['name']}: imagePullPolicy Always")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget_or_is_a_dev_singleton(rendered, overlay):
    docs = rendered[overlay]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    unguarded = []
    for w in workloads(docs):
        if w["kind"] == "Job":
            continue
        labels = pod_template(w)["metadata"]["labels"]
        if any(selects(p["spec"]["selector"], labels) for p in pdbs):
            continue
        if overlay == "dev" and replicas(docs, w) == 1:
            continue  # single-replica, dev-only (in-cluster PostgreSQL and Redis)
        unguarded.append(ref(w))
    assert unguarded == []
    # A budget that forbids every eviction of a one-pod Deployment would block node drains.
    for p in pdbs:
        assert "maxUnavailable" in p["spec"], f"{ref(p)}: use maxUnavailable"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_dns(rendered, overlay):
    policies = of_kind(rendered[overlay], "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"
    dns = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and any(port.get("port") == 53 for rule in p["spec"].get("egress", []) for port in rule.get("ports", []))
    ]
    assert dns, "no DNS egress for the default-denied pods"


def _allowed(policies, docs, src_name, dst_name, port):
    """Does some egress rule of src and some ingress rule of dst allow src→dst:port?"""

    def labels(name):
        return pod_template(next(w for w in workloads(docs) if w["metadata"]["name"] == name))["metadata"]["labels"]

    def matches(peer, other_labels):
        return "podSelector" in peer and "namespaceSelector" not in peer and selects(peer["podSelector"], other_labels)

    def rule_allows(direction, own, other, peer_key):
        for p in policies:
            if not selects(p["spec"]["podSelector"], own):
                continue
            for rule in p["spec"].get(direction, []):
                peers_ok = any(matches(peer, other) for peer in rule.get(peer_key, []))
                ports_ok = not rule.get("ports") or any(pp.get("port") == port for pp in rule["ports"])
                if peers_ok and ports_ok:
                    return True
        return False

    src, dst = labels(src_name), labels(dst_name)
    return rule_allows("egress", src, dst, "to") and rule_allows("ingress", dst, src, "from")


@pytest.mark.parametrize(
    "src,dst,port",
    [
        ("nginx", "api", 8000),
        ("nginx", "ws", 8001),
        ("api", "postgres", 5432),
        ("ws", "postgres", 5432),
        ("api", "redis", 6379),
        ("ws", "redis", 6379),
    ],
)
def test_dev_network_policies_allow_the_topology(rendered, src, dst, port):
    docs = rendered["dev"]
    assert _allowed(of_kind(docs, "NetworkPolicy"), docs, src, dst, port)


@pytest.mark.parametrize(
    "src,dst,port",
    [
        ("api", "ws", 8001),
        ("ws", "api", 8000),
        ("nginx", "postgres", 5432),
        ("nginx", "redis", 6379),
        ("api", "nginx", 8080),
        ("postgres", "redis", 6379),
    ],
)
def test_dev_network_policies_deny_the_rest(rendered, src, dst, port):
    docs = rendered["dev"]
    assert not _allowed(of_kind(docs, "NetworkPolicy"), docs, src, dst, port)


def test_prod_datastore_clients_may_reach_external_datastores_only_on_their_ports(rendered):
    policies = of_kind(rendered["prod"], "NetworkPolicy")
    external = [p for p in policies if any("ipBlock" in peer for r in p["spec"].get("egress", []) for peer in r["to"])]
    assert external and all(
        p["spec"]["podSelector"] == {"matchLabels": {"postwire.io/datastore-client": "true"}} for p in external
    )
    ports = {pp["port"] for p in external for r in p["spec"]["egress"] for pp in r.get("ports", [])}
    assert ports == {5432, 6379, 26379}  # 26379: Redis Sentinel
    names = {w["metadata"]["name"] for w in workloads(rendered["prod"])}
    assert not names & {"postgres", "redis"}, "prod runs no in-cluster datastore"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicated_tiers_spread_and_autoscaled_ones_leave_replicas_to_the_hpa(rendered, overlay):
    docs = rendered[overlay]
    problems = []
    for w in of_kind(docs, "Deployment"):
        hpa = hpa_for(docs, w)
        if hpa and "replicas" in w["spec"]:
            problems.append(f"{ref(w)}: sets replicas although {ref(hpa)} owns them")
        labels = pod_template(w)["metadata"]["labels"]
        guarded = any(selects(p["spec"]["selector"], labels) for p in of_kind(docs, "PodDisruptionBudget"))
        replicated = hpa is not None or w["spec"].get("replicas", 1) > 1 or guarded
        if replicated and not pod_template(w)["spec"].get("topologySpreadConstraints"):
            problems.append(f"{ref(w)}: no topologySpreadConstraints")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ws_tier_autoscales_gently_and_drains_gracefully(rendered, overlay):
    docs = rendered[overlay]
    ws = find(docs, "Deployment", "ws")
    hpa = hpa_for(docs, ws)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    spec = pod_template(ws)["spec"]
    container = spec["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The preStop pause, then Daphne's close (application-close-timeout 10 s), with margin.
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 30
    assert ws["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert any(
        selects(p["spec"]["selector"], pod_template(ws)["metadata"]["labels"])
        for p in of_kind(docs, "PodDisruptionBudget")
    )


EXPECTED_ROLES = {"api": (["api"], 8000, 10001), "ws": (["ws"], 8001, 10001)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_and_ws_roles_ports_node_names_and_migration_wait(rendered, overlay):
    docs = rendered[overlay]
    for name, (args, port, uid) in EXPECTED_ROLES.items():
        w = find(docs, "Deployment", name)
        c = pod_template(w)["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        assert c["args"] == args
        assert env["PORT"]["value"] == str(port)
        assert [p["containerPort"] for p in c["ports"]] == [port]
        assert env["POSTWIRE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert effective(w, c, "runAsUser") == uid
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        init = pod_template(w)["spec"]["initContainers"]
        if name == "api":  # migrates (under a lock) before the server starts
            assert [i.get("args") for i in init] == [["migrate"]]
        else:  # waits for an api pod to have migrated
            assert any("migrate --check" in " ".join(i.get("command", [])) for i in init), f"{name} does not wait"
    # No Job: its immutable pod template made every re-apply after a config or image change fail.
    assert not of_kind(docs, "Job")
    nginx = find(docs, "Deployment", "nginx")
    c = pod_template(nginx)["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["POSTWIRE_API_SERVERS"] == "api:8000" and env["POSTWIRE_WS_SERVERS"] == "ws-pods:8001"
    assert "POSTWIRE_RESOLVER" not in env
    # WebSockets are balanced by connection count over every ws pod: nginx must see the pods
    # themselves (a headless Service of exactly the ws Deployment's pods), and follow changes.
    ws_pods = find(docs, "Service", "ws-pods")["spec"]
    assert ws_pods["clusterIP"] == "None" and ws_pods["ports"][0]["port"] == 8001
    assert selects(ws_pods["selector"], pod_template(find(docs, "Deployment", "ws"))["metadata"]["labels"])
    assert not ws_pods.get("publishNotReadyAddresses"), "draining or starting pods would get sockets"
    assert int(env["POSTWIRE_NGINX_REFRESH_SECONDS"]) > 0
    assert effective(nginx, c, "runAsUser") == 101
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def _config(docs):
    cm = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("postwire-config-"))
    return cm["data"]


def test_settings_differ_between_dev_and_prod_only_where_they_should(rendered):
    dev, prod = _config(rendered["dev"]), _config(rendered["prod"])
    assert dev["POSTWIRE_ENV"] == prod["POSTWIRE_ENV"] == "production"
    assert dev["DJANGO_SECURE_COOKIES"] == "false" and prod["DJANGO_SECURE_COOKIES"] == "true"
    assert dev["GRAPHIQL_ENABLED"] == "true" and prod["GRAPHIQL_ENABLED"] == "false"
    for config in (dev, prod):
        assert "nginx" in config["DJANGO_ALLOWED_HOSTS"].split(",")
    # The public host, whichever edge prod uses (Ingress or Gateway API HTTPRoute).
    public_hosts = {r["host"] for i in of_kind(rendered["prod"], "Ingress") for r in i["spec"]["rules"]}
    public_hosts |= {h for route in of_kind(rendered["prod"], "HTTPRoute") for h in route["spec"]["hostnames"]}
    assert public_hosts and public_hosts <= set(prod["DJANGO_ALLOWED_HOSTS"].split(","))
    for overlay in OVERLAYS:
        for key in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            assert key not in _config(rendered[overlay]), f"{key} belongs in the Secret"


def test_ingress_routes_graphql_and_websockets_with_long_timeouts(rendered, tmp_path):
    """The optional Ingress (prod's edge line switched to components/ingress; the default, an
    HTTPRoute, is checked in test_gateway.py)."""
    docs = render(with_prod_edge(copy_tree(tmp_path, with_prod_secrets=True), "ingress"))
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] in _config(docs)["DJANGO_ALLOWED_HOSTS"].split(",")
    annotations = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600
    paths = {p["path"]: p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert {"/graphql", "/wsgraphql"} <= set(paths)
    assert all(s["name"] == "nginx" for s in paths.values())
    assert not of_kind(rendered["dev"], "Ingress"), "dev is reached with a port-forward"


def test_no_overlay_starts_a_load_test(rendered):
    for overlay in OVERLAYS:
        assert not [w for w in workloads(rendered[overlay]) if "loadtest" in w["metadata"]["name"]]
    (job,) = of_kind(rendered["loadtest"], "Job")
    env_sources = pod_template(job)["spec"]["containers"][0]["envFrom"]
    config = next(c for c in of_kind(rendered["loadtest"], "ConfigMap"))
    assert config["data"]["POSTWIRE_URL"] == "http://nginx:8080"
    assert {"configMapRef", "secretRef"} <= {k for s in env_sources for k in s}
    # nginx accepts the load tester: the overlays' default deny would drop it otherwise.
    policies = of_kind(rendered["loadtest"], "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "nginx"}} for p in policies)
    assert pods_selected(rendered["loadtest"], {"app.kubernetes.io/name": "loadtest"})


# --- what an operator trips over (issue: operators) ------------------------------------------


def _secret_keys_seen(container: dict) -> set[str] | None:
    """Keys of postwire-secrets this container gets; None if it gets the whole Secret."""
    if any(s.get("secretRef", {}).get("name", "").startswith("postwire-secrets") for s in container.get("envFrom", [])):
        return None
    return {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def _pod_specs(docs: list[dict]):
    """(kind/name, pod spec) of every workload: Deployments, StatefulSets, Jobs and CronJobs."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_migrate_init_container_sees_the_bootstrap_password(rendered, overlay):
    needs = {
        "Deployment/api/api": {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"},
        "Deployment/ws/ws": {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"},
        "CronJob/prune-events/prune-events": {"DJANGO_SECRET_KEY", "DATABASE_URL"},
    }
    seen = set()
    for workload, spec in _pod_specs(rendered[overlay]):
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{workload}/{container['name']}"
            seen.add(where)
            keys = _secret_keys_seen(container)
            if where == "Deployment/api/migrate":
                assert keys is None  # it creates the staff user: the whole Secret
                continue
            assert keys is not None and not any(k.startswith("POSTWIRE_BOOTSTRAP") for k in keys), where
            assert needs.get(where, set()) <= keys, where
    assert set(needs) | {"Deployment/api/migrate"} <= seen


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dns_is_allowed_by_namespace_not_by_a_coredns_label(rendered, overlay):
    dns = find(rendered[overlay], "NetworkPolicy", "allow-dns")
    peers = [peer for rule in dns["spec"]["egress"] for peer in rule["to"]]
    assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_may_scrape_every_api_and_ws_pod(rendered, overlay):
    docs = rendered[overlay]
    policy = find(docs, "NetworkPolicy", "metrics-from-prometheus")
    for name, port in (("api", 8000), ("ws", 8001)):
        template = pod_template(find(docs, "Deployment", name))
        assert selects(policy["spec"]["podSelector"], template["metadata"]["labels"])
        assert port in {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
        assert port in {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}


def test_prod_datastore_egress_covers_ipv6_too(rendered):
    policy = find(rendered["prod"], "NetworkPolicy", "datastore-clients-to-external-datastores")
    cidrs = {peer["ipBlock"]["cidr"] for r in policy["spec"]["egress"] for peer in r["to"] if "ipBlock" in peer}
    assert {"0.0.0.0/0", "::/0"} <= cidrs


def test_dev_postgres_is_governed_by_a_headless_service(rendered):
    docs = rendered["dev"]
    service = find(docs, "Service", find(docs, "StatefulSet", "postgres")["spec"]["serviceName"])
    assert service["spec"].get("clusterIP") == "None"


def test_dev_redis_maxmemory_leaves_headroom_under_its_limit(rendered):
    container = pod_template(find(rendered["dev"], "Deployment", "redis"))["spec"]["containers"][0]
    maxmemory = container["args"][container["args"].index("--maxmemory") + 1]
    limit = container["resources"]["limits"]["memory"]
    assert maxmemory.endswith("mb") and limit.endswith("Mi")
    assert int(maxmemory[:-2]) * 1_000_000 <= 0.7 * int(limit[:-2]) * 2**20


def test_prod_edge_autoscales_and_carries_many_sockets_per_pod(rendered):
    docs = rendered["prod"]
    hpa = find(docs, "HorizontalPodAutoscaler", "nginx")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "nginx" and hpa["spec"]["maxReplicas"] >= 2
    assert "replicas" not in find(docs, "Deployment", "nginx")["spec"]  # the HPA owns it
    env = {
        e["name"]: e.get("value")
        for e in pod_template(find(docs, "Deployment", "nginx"))["spec"]["containers"][0]["env"]
    }
    assert int(env["NGINX_WORKER_CONNECTIONS"]) >= 32768
    assert int(env["NGINX_WORKER_RLIMIT_NOFILE"]) > int(env["NGINX_WORKER_CONNECTIONS"])
