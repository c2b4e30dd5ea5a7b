"""nginx spreads WebSockets over the Daphne nodes by connection count (nginx/render-config.sh:
least_conn, with a zone so that every worker counts every worker's connections); the k8s boot
test shows the same through the ws pods' headless Service."""

import pytest

from tests.stack.fanout import sockets_follow_connection_counts
from tests.support.nginx import running_nginx

pytestmark = pytest.mark.stack


async def test_new_sockets_go_to_the_node_holding_the_fewest(stack):
    # A fresh nginx (none of the other tests' sockets counted) with two workers, as deployed.
    with running_nginx(
        "nginx-balancing",
        stack.run_dir,
        POSTWIRE_API_SERVERS=" ".join(f"127.0.0.1:{n.port}" for n in stack.api),
        POSTWIRE_WS_SERVERS=" ".join(f"127.0.0.1:{n.port}" for n in stack.ws),
        NGINX_WORKER_PROCESSES="2",
    ) as address:
        seen = await sockets_follow_connection_counts(f"ws://{address}/wsgraphql", {n.name for n in stack.ws})
    print(f"\nleast_conn over {len(stack.ws)} nodes through 2 workers: {seen}")
