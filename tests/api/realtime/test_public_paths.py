"""The real ASGI application with every fast path off (POSTWIRE_FAST_PATHS=none): what a node runs
on releases server.compat was not checked against. Delivery, resume, inbound validation and the
connection_init timeout must all still hold, on both protocols."""

from __future__ import annotations

import datetime

import pytest

from server import compat
from server.realtime import shapes
from tests.api.realtime.test_consumer import L, Socket, T, live_subscriptions, publish, until_live
from tests.support.client import POST_NOTIFY

pytestmark = pytest.mark.django_db(transaction=True)

RESUME = "subscription Resume($from: Seq) { postNotify(after: $from) { seq title } }"


@pytest.fixture(autouse=True)
def every_fast_path_off(monkeypatch):
    monkeypatch.setenv(compat.SETTING, "none")
    compat.decision.cache_clear()
    shapes.unsupported_reason.cache_clear()
    assert not any(compat.on(name) for name in compat.FAST_PATHS)
    yield
    monkeypatch.delenv(compat.SETTING)
    compat.decision.cache_clear()
    shapes.unsupported_reason.cache_clear()


@pytest.mark.parametrize("protocol", [T, L])
async def test_a_published_post_reaches_every_subscriber_through_strawberry(application, hub, publisher, protocol):
    baseline = live_subscriptions()
    sockets = [await Socket.open(application, protocol) for _ in range(3)]
    try:
        op_ids = [await socket.start(POST_NOTIFY) for socket in sockets]
        await until_live(hub, 3, baseline)
        assert hub.fanout.shapes == {}  # no shared execution: each subscriber is strawberry's
        event = await publish(publisher, "public path")
        for socket, op_id in zip(sockets, op_ids, strict=True):
            kind, payload = await socket.result(op_id)
            assert (kind, payload["data"]["postNotify"]["seq"]) == ("next", event.seq)
    finally:
        for socket in sockets:
            await socket.close()


async def test_a_resume_replays_exactly_the_gap_then_goes_live(application, hub, publisher):
    seen = await publish(publisher, "seen")
    missed = [await publish(publisher, f"missed {n}") for n in range(2)]
    baseline = live_subscriptions()
    socket = await Socket.open(application, T)
    try:
        op_id = await socket.start(RESUME, {"from": seen.seq})
        got = [(await socket.result(op_id))[1]["data"]["postNotify"]["seq"] for _ in missed]
        await until_live(hub, 1, baseline)
        live = await publish(publisher, "live")
        got.append((await socket.result(op_id))[1]["data"]["postNotify"]["seq"])
        assert got == [e.seq for e in [*missed, live]]
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", [T, L])
async def test_a_malformed_message_still_closes_the_socket_4400_with_its_reason(application, protocol):
    socket = await Socket.open(application, protocol)
    try:
        await socket.communicator.send_to(text_data="[1, 2]")
        closed = await socket.communicator.receive_output(timeout=5)
        assert closed == {
            "type": "websocket.close",
            "code": 4400,
            "reason": "Invalid message: a message must be a JSON object, not list",
        }
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", [T, L])
async def test_a_socket_without_connection_init_is_still_closed_4408(protocol):
    from server.realtime.consumer import GraphQLConsumer
    from server.realtime.sockets import ConnectionMiddleware
    from server.schema import ws_schema

    quick = GraphQLConsumer.as_asgi(schema=ws_schema, connection_init_wait_timeout=datetime.timedelta(seconds=0.5))
    socket = await Socket.open(ConnectionMiddleware(quick), protocol, init=False)
    try:
        closed = await socket.communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4408, "reason": "Connection initialisation timeout"}
    finally:
        await socket.close()


def test_shared_execution_is_off_for_the_websocket_schema():
    from server.schema import ws_schema

    assert shapes.unsupported_reason(ws_schema) == "turned off by POSTWIRE_FAST_PATHS"
