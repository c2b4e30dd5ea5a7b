"""The fault matrix on the shared stack (3 Daphne, 2 gunicorn, nginx, PostgreSQL, Redis).

Every row runs a continuous publish stream (tests.stack.faults) to subscribers over both protocols
that count every seq and resume with `after` when they lose their socket, breaks one thing, puts
it back, and checks that every subscriber got every committed publication exactly once, in order.
Each row leaves the stack as it found it. (Sentinel failover and group expiry: test_high_availability.)
"""

import asyncio
import os
import signal
import time

import psutil
import pytest
import redis

from server.realtime import drain
from tests.stack.faults import Matrix, report
from tests.support.client import POST_NOTIFY_AFTER, Socket
from tests.support.users import STAFF

pytestmark = pytest.mark.stack

GROUP_KEY = "asgi:group:posts_notifications"  # channels_redis's key for the hubs' group


def group_members(stack) -> set[bytes]:
    return set(redis.Redis.from_url(stack.redis_url).zrange(GROUP_KEY, 0, -1))


async def test_daphne_sigkill(stack):
    async with Matrix(stack, STAFF) as matrix:
        await asyncio.sleep(1)
        victim = matrix.trackers[0].node
        on_victim = [t for t in matrix.trackers if t.node == victim]
        stack.node(victim).process.kill()  # a crash: no goodbye
        recovery = await matrix.recovered()
        await asyncio.to_thread(stack.restart_node, victim)
        await asyncio.sleep(1)
        outcome = await matrix.settle()
    # Its clients saw the connection end (not a hang) and came back elsewhere.
    assert all(t.closes and len(t.nodes) >= 2 for t in on_victim)
    report("Daphne SIGKILL", outcome, recovery_s=recovery, reconnected=len(on_victim))


async def test_daphne_sigterm_drains_the_node(stack):
    """SIGTERM: close 1012 with a reason, leave the group, exit 0; clients resume with after."""
    async with Matrix(stack, STAFF, subscribers=9) as matrix:
        await asyncio.sleep(1)
        victim = matrix.trackers[0].node
        node = stack.node(victim)
        on_victim = [t for t in matrix.trackers if t.node == victim]
        members = group_members(stack)
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(node.process.popen.wait, 30)
        drained_in = time.monotonic() - started
        recovery = await matrix.recovered()
        left = members - group_members(stack)
        await asyncio.sleep(1)
        node.process.start()
        node.process.wait_for_http(f"{node.base_url}/healthz", timeout=60)
        outcome = await matrix.settle()
    assert exit_code == 0, node.process.log_tail()
    assert len(left) == 1, f"the drained hub should have left {GROUP_KEY}: before {members}, gone {left}"
    for tracker in on_victim:
        assert tracker.closes[0] == (drain.CLOSE_CODE, drain.REASON), tracker.closes
        assert tracker.nodes[1] != victim  # it stopped accepting before it closed them
    assert "drained in" in node.process.log_tail(200)
    report(
        "Daphne SIGTERM (drain)",
        outcome,
        drained_s=round(drained_in, 1),
        recovery_s=recovery,
        closed_1012=len(on_victim),
    )


async def test_rolling_restart_of_every_daphne_node(stack):
    async with Matrix(stack, STAFF) as matrix:
        await asyncio.sleep(1)
        started = time.monotonic()
        for node in list(stack.ws):
            await asyncio.to_thread(stack.restart_node, node.name)  # SIGTERM (drain), then start
            await asyncio.sleep(0.5)
        rolled_in = time.monotonic() - started
        recovery = await matrix.recovered()
        outcome = await matrix.settle()
    assert all(t.closes for t in matrix.trackers)  # every socket was on a node that restarted
    codes = {code for t in matrix.trackers for code, _ in t.closes}
    assert codes == {drain.CLOSE_CODE}, codes
    report("rolling restart of 3 Daphne nodes", outcome, rolled_s=round(rolled_in, 1), recovery_s=recovery)


async def test_redis_restart(stack):
    async with Matrix(stack, STAFF) as matrix:
        await asyncio.sleep(1)
        await asyncio.to_thread(stack.redis.restart, 0.5)  # every group membership is gone with it
        recovery = await matrix.recovered()
        outcome = await matrix.settle()
    # The sockets stayed open: only the hubs talk to Redis.
    assert not any(t.closes for t in matrix.trackers)
    report("Redis restart", outcome, recovery_s=recovery)


async def test_redis_down_30_seconds_while_publishing(stack):
    async with Matrix(stack, STAFF) as matrix:
        await asyncio.sleep(1)
        stack.redis.stop()
        before = matrix.publisher.ok
        await asyncio.sleep(30)
        during = matrix.publisher.ok - before
        slowest = max(matrix.publisher.latencies[before:] or [0])
        stack.redis.start()
        recovery = await matrix.recovered()
        outcome = await matrix.settle()
    # Publishing kept answering (PostgreSQL is the truth; only the broadcast failed)...
    assert during >= 30, (during, matrix.publisher.failed[-3:])
    assert not matrix.publisher.failed, matrix.publisher.failed[:3]
    # ...and sockets stayed open while the hubs recovered the gap from PostgreSQL.
    assert not any(t.closes for t in matrix.trackers)
    report(
        "Redis down 30 s",
        outcome,
        recovery_s=recovery,
        published_while_down=during,
        slowest_publish_s=round(slowest, 2),
    )


async def test_postgresql_restart(stack):
    async with Matrix(stack, STAFF) as matrix:
        await asyncio.sleep(1)
        restarting = asyncio.create_task(asyncio.to_thread(stack.postgres.restart, 4.0))
        await asyncio.sleep(1.5)
        # A resume while it is down is refused with a clear, temporary error (no hosts or ports).
        socket = await Socket.open(stack.ws_url)
        try:
            kind, payload = await socket.receive(await socket.start(POST_NOTIFY_AFTER, {"after": matrix.since}), 15)
        finally:
            await socket.close()
        await restarting
        recovery = await matrix.recovered()
        outcome = await matrix.settle()
    assert not any(t.closes for t in matrix.trackers)
    # Publishes while it was down were told so, without the server's addresses.
    assert any("Service temporarily unavailable" in f for f in matrix.publisher.failed), matrix.publisher.failed
    assert not any("127.0.0.1" in f for f in matrix.publisher.failed), matrix.publisher.failed
    assert kind in ("next", "error") and "Service temporarily unavailable" in str(payload), (kind, payload)
    assert "127.0.0.1" not in str(payload)
    report("PostgreSQL restart", outcome, recovery_s=recovery, failed_publishes=matrix.publisher.failed[:2])


async def test_gunicorn_worker_killed_mid_publish(stack):
    async with Matrix(stack, STAFF, interval=0.05) as matrix:
        await asyncio.sleep(1)
        killed = 0
        for api in stack.api:
            for worker in psutil.Process(api.process.pid).children():
                os.kill(worker.pid, signal.SIGKILL)  # whatever it was doing, mid-request or not
                killed += 1
                await asyncio.sleep(0.3)
        recovery = await matrix.recovered()  # gunicorn's master starts new workers
        outcome = await matrix.settle()
    assert not any(t.closes for t in matrix.trackers)
    report(
        "gunicorn workers SIGKILLed while publishing",
        outcome,
        recovery_s=recovery,
        workers_killed=killed,
        failed_publishes=matrix.publisher.failed[:2],
    )
