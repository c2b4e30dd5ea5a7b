"""Boot test: the rendered dev overlay's pods run as containers (tests/k8s/podrunner.py), and a
publish made through the nginx Service reaches a subscriber on every ws pod, exactly once."""

import base64

import pytest

from tests.k8s.manifests import of_kind, ref, workloads
from tests.k8s.podrunner import Cluster
from tests.stack.fanout import close_all, open_subscribers, publish_and_expect, until_live
from tests.support.client import GraphQLHttp

pytestmark = pytest.mark.k8s

# A cluster starts everything at once and lets init containers, probes and restarts sort out
# the order; Docker has no ClusterIP, so each tier starts once the tiers it calls are Ready.
BOOT_ORDER = [
    ("StatefulSet", "postgres"),
    ("Deployment", "redis"),
    ("Deployment", "api"),
    ("Deployment", "ws"),
    ("Deployment", "nginx"),
]


def bootstrap_credentials(docs) -> tuple[str, str]:
    secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"].startswith("postwire-secrets-"))
    username, password = (secret["data"][f"POSTWIRE_BOOTSTRAP_{key}"] for key in ("USERNAME", "PASSWORD"))
    return base64.b64decode(username).decode(), base64.b64decode(password).decode()


async def subscribers_on_every_pod(url: str, pods: set[str]):
    """Open subscribers one at a time until every ws pod holds at least one."""
    subscribers = []
    while {s.node for s in subscribers} != pods:
        assert len(subscribers) < 4 * len(pods), f"sockets reached only {sorted({s.node for s in subscribers})}"
        protocol = ("graphql-transport-ws", "graphql-ws")[len(subscribers) % 2]
        subscribers += await open_subscribers(url, 1, protocols=(protocol,))
    return subscribers


@pytest.mark.timeout(900)
async def test_dev_overlay_boots_and_a_publish_reaches_every_ws_pod_once(rendered, local_images):
    docs = rendered["dev"]
    assert {ref(w) for w in workloads(docs)} == {f"{k}/{n}" for k, n in BOOT_ORDER}, "add new workloads to BOOT_ORDER"
    username, password = bootstrap_credentials(docs)

    with Cluster(docs, local_images, publish={"nginx": 8080}) as cluster:
        for kind, name in BOOT_ORDER:
            cluster.start(kind, name)  # api's init container migrates and creates the staff user
        pods = {
            name: {p.name for p in cluster.pods if p.workload["metadata"]["name"] == name} for _, name in BOOT_ORDER
        }
        assert len(pods["ws"]) >= 2

        edge = cluster.published("nginx")
        staff = GraphQLHttp(f"http://{edge}")
        staff.login(username, password)
        assert staff.served_by in pods["api"]  # POSTWIRE_NODE_NAME is the pod name
        subscribers = await subscribers_on_every_pod(f"ws://{edge}/wsgraphql", pods["ws"])
        try:
            await until_live(subscribers, staff)
            await publish_and_expect(subscribers, staff)
        except TimeoutError:
            pytest.fail(
                "a publish through nginx did not reach every ws subscriber within 10 s: live fan-out "
                "over the Redis channel layer is broken (only the hubs' periodic database catch-up, "
                "every POSTWIRE_HUB_CATCHUP_SECONDS = 30 s by default, delivers)"
            )
        finally:
            await close_all(subscribers)

    assert cluster.leftovers() == [], "teardown left containers, volumes or networks behind"
