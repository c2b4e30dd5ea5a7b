"""WebSocket security through nginx: Origin check, and the staff-only subscription."""

import pytest
import websockets

from tests.support.client import DRAFT_ACTIVITY, POST_NOTIFY, GraphQLHttp, Socket

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


async def until_live(socket: Socket, op_id: str, make_event, what: str) -> tuple[str, dict | None]:
    """Make events until the subscription hears one (it is live once its node's hub has it), and
    return the first answer; fail by name, not with a hang or an unbound variable."""
    for _ in range(10):
        make_event()
        try:
            return await socket.receive(op_id, timeout=3)
        except TimeoutError:
            continue
    pytest.fail(f"{what} heard nothing of 10 events in 30 s: it never went live")


async def test_staff_session_cookie_opens_the_staff_only_subscription(stack, staff):
    def publish_a_post() -> str:
        gid, title = staff.create_post()
        result = staff.publish(gid)
        assert result["data"]["publishPost"]["__typename"] == "Post", result
        return title

    socket = await Socket.open(stack.ws_url, cookie=staff.cookie_header)
    watcher = await Socket.open(stack.ws_url)  # anonymous: hears of published posts only
    try:
        activity = await socket.start(DRAFT_ACTIVITY)
        kind, payload = await until_live(socket, activity, staff.create_post, "the staff's draftActivity")
        assert kind == "next" and payload["data"]["draftActivity"]["kind"] == "CREATED", (kind, payload)
        published = await watcher.start(POST_NOTIFY)
        await until_live(watcher, published, publish_a_post, "an anonymous postNotify")

        # The draft is announced to staff...
        gid, title = staff.create_post("a secret draft")
        while True:
            kind, payload = await socket.receive(activity, timeout=10)
            assert kind == "next", (kind, payload)
            if payload["data"]["draftActivity"]["title"] == title:
                break
        assert payload["data"]["draftActivity"]["postId"] == gid
        # ...and no one else learns its title: not the anonymous subscriber, which hears the post
        # published after it (events reach a subscriber in seq order) and nothing of the draft...
        marker_title = publish_a_post()
        heard = []
        while marker_title not in heard:
            kind, payload = await watcher.receive(published, timeout=10)
            note = ((payload or {}).get("data") or {}).get("postNotify")
            assert kind == "next" and note, f"the anonymous subscriber heard of something else than a post: {payload}"
            heard.append(note["title"])
        assert title not in heard, f"the anonymous subscriber was told of the draft: {heard}"
        # ...nor an anonymous reader over HTTP.
        anonymous = GraphQLHttp(stack.http_url).execute("query($id: ID!) { post(id: $id) { title } }", {"id": gid})
        assert anonymous == {"data": {"post": None}}, anonymous
    finally:
        await socket.close()
        await watcher.close()
