"""Redis Sentinel failover and a short group expiry, on a stack of their own.

Redis here is a master, a replica and three sentinels (Debian's redis-sentinel, quorum 2); the
nodes find the master through REDIS_SENTINELS. CHANNEL_GROUP_EXPIRY is 6 s, so every
subscription in these tests outlives several expiries of the hubs' group membership.
"""

import asyncio
import time
import urllib.request

import pytest
import redis

from devstack.backing import Redis, Sentinel
from devstack.stack import Stack
from tests.stack.faults import Matrix, report
from tests.support.users import STAFF

pytestmark = pytest.mark.stack

MASTER = "postwire"
GROUP_EXPIRY = 6


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ha")
    master = Redis(run_dir).start()
    replica = Redis(run_dir, replica_of=master.port).start()
    sentinels = []
    try:
        sentinels = [Sentinel(run_dir, master.port, master_name=MASTER).start() for _ in range(3)]
        env = {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
            "CHANNEL_GROUP_EXPIRY": str(GROUP_EXPIRY),
            "POSTWIRE_HUB_CHECK_SECONDS": "1",
        }
        # REDIS_URL names the master only for the database number: the nodes ask the sentinels.
        with Stack(
            ws_nodes=2,
            api_nodes=1,
            run_dir=run_dir,
            redis_url=f"redis://127.0.0.1:{master.port}/0",
            extra_env=env,
            database_name="postwire_ha",
        ) as stack:
            stack.sentinels, stack.master, stack.replica = sentinels, master, replica
            yield stack
    finally:
        for server in [*sentinels, replica, master]:
            server.stop()


def current_master(stack) -> int:
    sentinel = redis.Redis(port=stack.sentinels[0].port)
    return int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1])


def readiness(stack) -> list[dict]:
    import json

    answers = []
    for node in stack.ws + stack.api:
        with urllib.request.urlopen(f"{node.base_url}/readyz", timeout=5) as response:
            answers.append(json.load(response))
    return answers


async def test_a_sentinel_failover_loses_nothing(ha):
    assert current_master(ha) == ha.master.port
    async with Matrix(ha, STAFF) as matrix:
        await asyncio.sleep(1)
        started = time.monotonic()
        ha.master.process.kill()  # the master dies; the sentinels promote the replica
        while current_master(ha) != ha.replica.port:
            assert time.monotonic() - started < 30, "no failover within 30 s"
            await asyncio.sleep(0.2)
        failover = time.monotonic() - started
        recovery = await matrix.recovered()
        outcome = await matrix.settle()
    assert not any(t.closes for t in matrix.trackers)  # sockets never noticed
    assert all(r["ready"] for r in readiness(ha)), readiness(ha)  # readiness follows the new master
    report(
        "Sentinel failover (master SIGKILLed)",
        outcome,
        failover_s=round(failover, 1),
        recovery_s=recovery,
        failed_publishes=matrix.publisher.failed[:2],
    )


async def test_subscriptions_outlive_the_group_expiry(ha):
    async with Matrix(ha, STAFF, interval=0.5) as matrix:
        await asyncio.sleep(GROUP_EXPIRY * 3)
        outcome = await matrix.settle()
    # The hubs re-joined in time (expiry / 4): Redis never dropped them, so no catch-up was needed.
    logs = "".join(node.process.log_tail(2000) for node in ha.ws)
    assert "membership gone" not in logs
    report(f"subscriptions older than the group expiry ({GROUP_EXPIRY} s)", outcome)
