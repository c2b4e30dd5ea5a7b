"""WebSocket security through nginx: Origin check, and the staff-only subscription."""

import asyncio

import pytest
import websockets

from tests.support.client import DRAFT_ACTIVITY, GraphQLHttp, Socket

pytestmark = pytest.mark.stack


def graphql_errors(kind, payload) -> list[dict]:
    """A refused subscription: an `error` message (legacy protocol) or a result with `errors`
    (graphql-transport-ws sends resolver errors as `next`, then `complete`)."""
    if kind == "error":
        return payload if isinstance(payload, list) else [payload]
    assert kind == "next" and payload.get("data") is None, (kind, payload)
    return payload["errors"]


async def test_a_websocket_from_a_foreign_origin_is_refused(stack):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Socket.open(stack.ws_url, origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_a_websocket_from_our_own_origin_is_accepted(stack):
    socket = await Socket.open(stack.ws_url, origin=f"http://127.0.0.1:{stack.port}")
    try:
        assert (await socket.node()).startswith("ws-")
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_staff_only_subscription_rejects_an_anonymous_socket_with_an_error(stack, protocol):
    socket = await Socket.open(stack.ws_url, protocol=protocol)
    try:
        op_id = await socket.start(DRAFT_ACTIVITY)
        kind, payload = await socket.receive(op_id, timeout=5)  # an answer, not a hang
        assert "staff" in graphql_errors(kind, payload)[0]["message"]
    finally:
        await socket.close()


async def test_staff_only_subscription_rejects_a_logged_in_non_staff_user(stack, make_user):
    user = GraphQLHttp(stack.http_url)
    user.login(*make_user(staff=False, perm=False))
    socket = await Socket.open(stack.ws_url, cookie=user.cookie_header)
    try:
        kind, payload = await socket.receive(await socket.start(DRAFT_ACTIVITY), timeout=5)
        assert "staff" in graphql_errors(kind, payload)[0]["message"]
    finally:
        await socket.close()


async def test_staff_session_cookie_opens_the_staff_only_subscription(stack, staff):
    socket = await Socket.open(stack.ws_url, cookie=staff.cookie_header)
    try:
        op_id = await socket.start(DRAFT_ACTIVITY)
        for _ in range(10):  # warm-up: drafts are created until the subscription is live
            gid, title = staff.create_post()
            try:
                kind, payload = await socket.receive(op_id, timeout=3)
                break
            except asyncio.TimeoutError:
                continue
        assert kind == "next", payload
        activity = payload["data"]["draftActivity"]
        assert activity["kind"] == "CREATED"
        # The draft is announced to staff, and no one else learns its title.
        gid, title = staff.create_post("a secret draft")
        while True:
            kind, payload = await socket.receive(op_id, timeout=10)
            if payload["data"]["draftActivity"]["title"] == "a secret draft":
                break
        assert payload["data"]["draftActivity"]["postId"] == gid
    finally:
        await socket.close()
