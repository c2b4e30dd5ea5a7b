"""Losing a Daphne node, and restarting Redis, with subscribers connected through nginx.

These tests disturb the shared stack, so each puts it back as it found it."""

import asyncio

import pytest

from tests.stack.fanout import close_all, open_subscribers, publish_and_expect, until_live

pytestmark = pytest.mark.stack


async def test_losing_a_node_disconnects_its_clients_who_reconnect_and_keep_receiving(stack, staff):
    subscribers = await open_subscribers(stack.ws_url, 6)
    victim = "ws-2"
    try:
        await until_live(subscribers, staff)
        on_victim = [s for s in subscribers if s.node == victim]
        survivors = [s for s in subscribers if s.node != victim]
        assert on_victim and survivors

        stack.node(victim).process.kill()  # a crash: SIGKILL, no goodbye
        # Its clients see the connection end (not a hang)...
        await asyncio.wait_for(asyncio.gather(*(s.socket.closed.wait() for s in on_victim)), 10)
        # ...reconnect through nginx, which sends them to the living nodes...
        reconnected = await open_subscribers(stack.ws_url, len(on_victim))
        assert victim not in {s.node for s in reconnected}
        everyone = survivors + reconnected
        await until_live(reconnected, staff)
        await asyncio.gather(*(s.drain() for s in survivors))
        # ...and the next publish reaches everyone exactly once.
        await publish_and_expect(everyone, staff)
        subscribers = everyone
    finally:
        await close_all(subscribers)
        stack.restart_node(victim)


async def test_a_redis_restart_keeps_sockets_open_and_loses_no_publication(stack, staff):
    subscribers = await open_subscribers(stack.ws_url, 6)
    try:
        await until_live(subscribers, staff)
        stack.redis.stop()  # every group membership is gone with it
        gid, title = staff.create_post("while redis was down")
        during = staff.publish(gid)
        # The publish commits (PostgreSQL is the truth); only its broadcast fails.
        assert during["data"]["publishPost"]["published"] is True
        stack.redis.start()
        # The hubs notice they were forgotten, re-join, and recover the gap from PostgreSQL.
        for kind, payload in await asyncio.gather(*(s.next(30) for s in subscribers)):
            assert kind == "next" and payload["data"]["postNotify"]["title"] == title
        assert not any(s.socket.closed.is_set() for s in subscribers)
        await publish_and_expect(subscribers, staff, title="after the restart")
    finally:
        await close_all(subscribers)
        if not stack.redis.process.alive():
            stack.redis.start()
