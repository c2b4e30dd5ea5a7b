"""Boot test: the rendered dev overlay's pods run as containers (tests/k8s/podrunner.py), a
publish made through the nginx Service reaches a subscriber on every ws pod, exactly once, and
nginx balances new sockets over the ws pods by connection count."""

import asyncio
import base64
import time

import pytest

from tests.k8s.manifests import of_kind, ref, workloads
from tests.k8s.podrunner import Cluster
from tests.stack.fanout import (
    close_all,
    open_subscribers,
    publish_and_expect,
    sockets_follow_connection_counts,
    until_live,
)
from tests.support.client import GraphQLHttp, Socket

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


async def until_a_socket_lands_on(url: str, pod: str, within: float = 45.0) -> float:
    """Open sockets (closing those that land elsewhere) until one lands on `pod`; how long it took.
    (Not "every next socket": nginx's reload starts its connection counts afresh, so after a
    scale-out new sockets spread over all pods, the new one included; see nginx/entrypoint.sh.)"""
    started = time.monotonic()
    while True:
        socket = await Socket.open(url)
        node = await socket.node()
        if node == pod:
            break
        await socket.close()
        assert time.monotonic() - started < within, f"nginx sent no socket to the new pod {pod} in {within:.0f} s"
        await asyncio.sleep(2.0)
    await socket.close()
    return time.monotonic() - started


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
        # nginx reaches the ws pods through their headless Service, one address per pod, and
        # balances by connection count (with a ClusterIP it saw one address: sockets landed at random).
        await asyncio.sleep(1.0)  # the subscribers' closes reach nginx
        seen = await sockets_follow_connection_counts(f"ws://{edge}/wsgraphql", pods["ws"])
        print(f"\nleast_conn over the ws pods: {seen}")
        # A scale-out: nginx finds the new pod (it looks the name up every
        # POSTWIRE_NGINX_REFRESH_SECONDS and reloads) and sends it new sockets.
        held = [await Socket.open(f"ws://{edge}/wsgraphql") for _ in range(2 * len(pods["ws"]))]
        try:
            (new,) = cluster.scale("Deployment", "ws", len(pods["ws"]) + 1)
            waited = await until_a_socket_lands_on(f"ws://{edge}/wsgraphql", new.name)
            print(f"scale-out: {new.name} got a new socket {waited:.1f} s after it was Ready")
        finally:
            for socket in held:
                await socket.close()

    assert cluster.leftovers() == [], "teardown left containers, volumes or networks behind"
