"""The WebSocket side of the real ASGI application (server.asgi), in process.

Channels tests its consumers this way: `WebsocketCommunicator` drives the application object
Daphne would run (connection handles, request id, Origin/Host check, session auth, routing, the
GraphQL consumer) without a server, against the session's real PostgreSQL and Redis. Publishing
goes through `services.post_publish`, the commit hook and the real channel layer to this
process's hub. With no Daphne here, the hub writes through each socket's ASGI send (the public
path of fast path `direct_writes`, as under any other ASGI server).

What this tier cannot see, because there is no Daphne here: the direct frame writes (they need
Daphne's Twisted transport), the unsent-bytes cut-off of a reader that stops reading, close
reasons as a client's WebSocket library reads them, and anything across processes or through
nginx. Those stay in tests/stack and tests/api/compat.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client import REGISTRY

from server.app.blog import services
from server.app.blog.models import PostEvent
from server.app.blog.notifications import get_hub
from server.app.blog.permissions import publisher_permissions
from server.realtime import consumer as consumer_module
from server.realtime import origin as origin_module
from server.realtime import protocols as protocols_module
from server.realtime.inbox import Inbox
from tests.support.client import DRAFT_ACTIVITY, POST_NOTIFY, SERVER_NODE

pytestmark = pytest.mark.django_db(transaction=True)

T, L = "graphql-transport-ws", "graphql-ws"
HOST = "localhost"  # in ALLOWED_HOSTS by default in development, which the test session runs as
PASSWORD = "pw-123456789"


class Refused(Exception):
    """The handshake was refused (an HTTP 403 under Daphne)."""


class Socket:
    """One in-process WebSocket through the whole application, speaking either protocol."""

    def __init__(self, communicator: WebsocketCommunicator, protocol: str):
        self.communicator, self.protocol = communicator, protocol
        self.ids = 0

    @classmethod
    async def open(
        cls,
        application,
        protocol: str = T,
        *,
        origin: str | None = None,
        cookie: str | None = None,
        path: str = "/wsgraphql",
        host: str = HOST,
        init: bool = True,
    ) -> Socket:
        headers = [(b"host", f"{host}:8080".encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if cookie is not None:
            headers.append((b"cookie", cookie.encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=[protocol])
        connected, chosen = await communicator.connect(timeout=5)
        if not connected:
            await communicator.disconnect(timeout=5)  # what the server does after its 403
            raise Refused(chosen)
        assert chosen == protocol
        socket = cls(communicator, protocol)
        if init:
            await socket.send({"type": "connection_init", "payload": {}})
            assert await socket.receive() == {"type": "connection_ack"}
        return socket

    async def send(self, message: dict) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict:
        return await self.communicator.receive_json_from(timeout=timeout)

    async def start(self, query: str, variables: dict | None = None) -> str:
        self.ids += 1
        op_id = str(self.ids)
        kind = "subscribe" if self.protocol == T else "start"
        await self.send({"type": kind, "id": op_id, "payload": {"query": query, "variables": variables or {}}})
        return op_id

    async def result(self, op_id: str, timeout: float = 10.0) -> tuple[str, dict | None]:
        """The next message of an operation, as (kind, payload): legacy `data` reads as `next`."""
        message = await self.receive(timeout)
        assert message.get("id") == op_id, message
        return {"data": "next"}.get(message["type"], message["type"]), message.get("payload")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.communicator.disconnect(timeout=5)


def refusal(kind: str, payload) -> str:
    """The message of a subscription refused by its resolver: graphql-transport-ws sends the
    error as a `next` result (then `complete`), the legacy protocol as an `error` message."""
    if kind == "error":
        return (payload[0] if isinstance(payload, list) else payload)["message"]
    assert kind == "next" and payload["data"] is None, (kind, payload)
    return payload["errors"][0]["message"]


def live_subscriptions() -> float:
    return REGISTRY.get_sample_value("postwire_live_subscriptions") or 0.0


async def until_live(hub, count: int, baseline: float, timeout: float = 10.0) -> None:
    """Until `count` more subscriptions are registered with the hub and it has joined the group:
    what is published from then on reaches them."""
    async with asyncio.timeout(timeout):
        while live_subscriptions() < baseline + count:
            await asyncio.sleep(0.01)
        await hub.connected.wait()


def make_user(name: str, *, staff: bool = False, publisher: bool = False) -> User:
    user = User.objects.create_user(name, password=PASSWORD, is_staff=staff)
    if publisher:
        user.user_permissions.add(*publisher_permissions())
    return User.objects.get(pk=user.pk)


def session_cookie(user: User) -> str:
    """A logged-in session, as the GraphQL login leaves it (force_login would otherwise record the
    first backend, the login throttle, which authenticates no one)."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@sync_to_async
def publish(publisher: User, title: str) -> PostEvent:
    """A draft, then its publication, through the service functions (commit hook and all)."""
    post = services.post_create(author=publisher, title=title)
    services.post_publish(post_id=post.pk, user=publisher)
    return PostEvent.objects.get(post_id=post.pk, kind="published")


# --- the handshake and the two protocols ------------------------------------------------------


@pytest.mark.parametrize("protocol", [T, L])
@pytest.mark.parametrize("path", ["/wsgraphql", "/graphql"])
async def test_both_protocols_are_acknowledged_and_answer_on_both_paths(application, protocol, path):
    socket = await Socket.open(application, protocol, path=path)  # asserts the ack
    try:
        op_id = await socket.start(SERVER_NODE)
        assert await socket.result(op_id) == ("next", {"data": {"serverNode": "pytest"}})
        assert await socket.result(op_id) == ("complete", None)
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", [T, L])
async def test_an_operation_before_connection_init_closes_the_socket_4401(application, protocol):
    socket = await Socket.open(application, protocol, init=False)
    try:
        await socket.start(SERVER_NODE)
        closed = await socket.communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4401, "reason": "Unauthorized"}
    finally:
        await socket.close()


def instances_connected(monkeypatch, consumer_class) -> list:
    """The instances of a consumer class the application builds, as their connect() runs."""
    instances = []
    connect = consumer_class.connect

    async def recording_connect(self):
        instances.append(self)
        await connect(self)

    monkeypatch.setattr(consumer_class, "connect", recording_connect)
    return instances


async def test_a_socket_holds_no_channel_layer_channel(application, monkeypatch, settings):
    """In the default (direct) delivery only the hub talks to Redis: a socket has no layer channel,
    so it does not read Redis and a Redis outage cannot close it. Checked on the consumer
    instance the application builds, and by using a socket while the layer points at a port where
    nothing listens: a consumer with a layer channel would die reading from it."""
    assert settings.DELIVERY == "direct"
    consumers = instances_connected(monkeypatch, consumer_module.GraphQLConsumer)
    dead = copy.deepcopy(settings.CHANNEL_LAYERS["default"])
    dead["CONFIG"]["hosts"][0]["address"] = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = {"default": dead}
    channel_layers.backends.clear()
    socket = await Socket.open(application)
    try:
        (consumer,) = consumers
        assert consumer.channel_layer is None
        assert not hasattr(consumer, "channel_name")
        await asyncio.sleep(1.0)  # long enough for a receive from a dead Redis to have failed
        op_id = await socket.start(SERVER_NODE)
        assert await socket.result(op_id) == ("next", {"data": {"serverNode": "pytest"}})
        assert await socket.result(op_id) == ("complete", None)
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}
    finally:
        await socket.close()


# --- Origin and Host, as the application is composed ------------------------------------------


async def handshake(application, **headers) -> str:
    try:
        socket = await Socket.open(application, init=False, **headers)
    except Refused:
        return "refused"
    await socket.close()
    return "accepted"


@pytest.mark.parametrize("origin", ["http://localhost:8080", None])
async def test_our_own_origin_and_origin_less_clients_are_accepted(application, origin):
    assert await handshake(application, origin=origin) == "accepted"


async def test_foreign_origins_and_hosts_are_refused_and_so_is_no_origin_when_one_is_required(
    application, settings, monkeypatch
):
    """server.realtime.origin, as server.asgi composes it. (strawberry's consumer also refuses a
    cross-site Origin by itself; the Host check and POSTWIRE_WS_REQUIRE_ORIGIN are postwire's
    alone.) The refusing consumer opens no channel-layer channel (channels' own WebsocketDenier
    would hold a Redis read for up to 5 s per refused socket)."""
    deniers = instances_connected(monkeypatch, origin_module.Denier)
    cases = {
        "a foreign Origin (cross-site WebSocket hijacking)": {"origin": "https://evil.example"},
        "a Host this service does not serve": {"host": "evil.example"},
        "a foreign Host with our Origin": {"host": "evil.example", "origin": "http://localhost:8080"},
    }
    expected = dict.fromkeys(cases, "refused")
    settings.WS_REQUIRE_ORIGIN = True  # POSTWIRE_WS_REQUIRE_ORIGIN: Origin-less clients refused too
    cases["no Origin, one required"] = {}
    cases["our Origin, one required"] = {"origin": "http://localhost:8080"}
    expected |= {"no Origin, one required": "refused", "our Origin, one required": "accepted"}
    outcomes = [await handshake(application, **headers) for headers in cases.values()]
    assert dict(zip(cases, outcomes, strict=True)) == expected
    assert len(deniers) == 4 and all(d.channel_layer is None for d in deniers)


# --- subscriptions and who may open them ------------------------------------------------------


@pytest.mark.parametrize("protocol", [T, L])
async def test_a_published_post_reaches_subscribers_on_both_protocols(application, hub, publisher, protocol):
    baseline = live_subscriptions()
    sockets = [await Socket.open(application, protocol) for _ in range(3)]
    try:
        op_ids = [await socket.start(POST_NOTIFY) for socket in sockets]
        await until_live(hub, 3, baseline)
        event = await publish(publisher, "hello from the service")
        for socket, op_id in zip(sockets, op_ids, strict=True):
            kind, payload = await socket.result(op_id)
            assert kind == "next"
            notification = payload["data"]["postNotify"]
            assert (notification["title"], notification["seq"]) == ("hello from the service", event.seq)
        # One group member for the whole process, however many sockets subscribe (O(processes)
        # Redis work per publish): the hub's channel, and nothing per socket.
        layer = get_channel_layer()
        members = await layer.connection(layer.consistent_hash(settings.POSTS_CHANNEL)).zrange(
            layer._group_key(settings.POSTS_CHANNEL), 0, -1
        )
        assert [m.decode() for m in members] == [hub.channel_name]
    finally:
        for socket in sockets:
            await socket.close()


async def test_by_viewer_is_true_only_for_the_publishers_own_socket(application, hub, publisher):
    """A viewer-dependent field: each subscriber must get its own answer, never another's."""
    query = "subscription { postNotify { seq byViewer } }"
    baseline = live_subscriptions()
    own = await Socket.open(application, cookie=await sync_to_async(session_cookie)(publisher))
    anonymous = await Socket.open(application)
    try:
        own_id, anonymous_id = await own.start(query), await anonymous.start(query)
        await until_live(hub, 2, baseline)
        event = await publish(publisher, "mine")
        assert await own.result(own_id) == ("next", {"data": {"postNotify": {"seq": event.seq, "byViewer": True}}})
        assert await anonymous.result(anonymous_id) == (
            "next",
            {"data": {"postNotify": {"seq": event.seq, "byViewer": False}}},
        )
    finally:
        await own.close()
        await anonymous.close()


@pytest.mark.parametrize("who", ["anonymous", "logged-in, not staff", "a forged session cookie"])
@pytest.mark.parametrize("protocol", [T, L])
async def test_draft_activity_is_refused_to_everyone_but_staff(application, hub, protocol, who):
    cookie = None
    if who == "logged-in, not staff":
        cookie = await sync_to_async(lambda: session_cookie(make_user("reader")))()
    elif who == "a forged session cookie":
        cookie = f"{settings.SESSION_COOKIE_NAME}=not-a-session-anyone-was-given"
    socket = await Socket.open(application, protocol, cookie=cookie)
    try:
        baseline = live_subscriptions()
        refused_id = await socket.start(DRAFT_ACTIVITY)
        kind, payload = await socket.result(refused_id)
        assert refusal(kind, payload).startswith("draftActivity is for staff only")
        if kind == "next":
            assert await socket.result(refused_id) == ("complete", None)
        assert live_subscriptions() == baseline  # refused before the hub was asked for anything
        # The socket is still usable after the refusal.
        op_id = await socket.start(SERVER_NODE)
        assert await socket.result(op_id) == ("next", {"data": {"serverNode": "pytest"}})
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", [T, L])
async def test_a_staff_session_cookie_opens_draft_activity(application, hub, publisher, protocol):
    baseline = live_subscriptions()
    socket = await Socket.open(application, protocol, cookie=await sync_to_async(session_cookie)(publisher))
    try:
        op_id = await socket.start(DRAFT_ACTIVITY)
        await until_live(hub, 1, baseline)
        draft = await sync_to_async(services.post_create)(author=publisher, title="a secret draft")
        kind, payload = await socket.result(op_id)
        assert kind == "next", payload
        activity = payload["data"]["draftActivity"]
        assert (activity["kind"], activity["title"]) == ("CREATED", "a secret draft")
        from strawberry.relay import to_base64

        assert activity["postId"] == to_base64("Post", str(draft.pk))
    finally:
        await socket.close()


# --- a subscriber that cannot keep up ---------------------------------------------------------


class StallableSends:
    """Wraps the application; while `stalled`, a socket's outgoing messages wait (as a consumer
    whose sends block would). Daphne's own sends never block, so in production the plain path
    falls behind only when its task is starved; this makes it happen on demand."""

    def __init__(self, application):
        self.application = application
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def __call__(self, scope, receive, send):
        async def gated_send(message):
            if message["type"] == "websocket.send":
                await self.flowing.wait()
            await send(message)

        return await self.application(scope, receive, gated_send)


async def stalled_socket_results(application, publisher, settings, published: int):
    """A subscriber whose sends stall while `published` posts go out, then resume; and a healthy
    subscriber alongside. Returns (events, the stalled socket's results, the healthy one's)."""
    settings.HUB_SUBSCRIBER_QUEUE = 3  # read when the hub is built (the fixture clears it)
    get_hub.cache_clear()
    hub = get_hub()
    stallable = StallableSends(application)
    baseline = live_subscriptions()
    slow = await Socket.open(stallable)
    healthy = await Socket.open(application)
    try:
        slow_id, healthy_id = await slow.start(POST_NOTIFY), await healthy.start(POST_NOTIFY)
        await until_live(hub, 2, baseline)
        stallable.flowing.clear()
        events, healthy_got = [], []
        for n in range(published):
            # One at a time, each read by the healthy subscriber before the next: it keeps up
            # (its queue is as small), while the stalled one's queue fills.
            events.append(await publish(publisher, f"post {n}"))
            healthy_got.append(await healthy.result(healthy_id))
        stallable.flowing.set()
        slow_got = []
        while not slow_got or slow_got[-1][0] != "complete":
            slow_got.append(await slow.result(slow_id))
        # The socket itself stays open and usable: only the subscription ended.
        op_id = await slow.start(SERVER_NODE)
        assert await slow.result(op_id) == ("next", {"data": {"serverNode": "pytest"}})
        return events, slow_got, healthy_got
    finally:
        await slow.close()
        await healthy.close()
        await hub.stop()


async def test_a_subscriber_that_falls_behind_is_cut_off_and_told_where_to_resume(application, publisher, settings):
    events, slow_got, healthy_got = await stalled_socket_results(application, publisher, settings, 8)
    # The healthy subscriber got everything, while the other one was stalled.
    assert [p["data"]["postNotify"]["seq"] for _, p in healthy_got] == [e.seq for e in events]
    # The stalled one: fewer results than were published, then an error naming the seq to resume
    # after, then complete. Bounded: what the hub held for it never exceeded its queue.
    *delivered, (error_kind, error), (complete_kind, _) = slow_got
    assert (error_kind, complete_kind) == ("next", "complete")
    seqs = [p["data"]["postNotify"]["seq"] for _, p in delivered]
    assert len(seqs) < len(events)
    assert len(seqs) <= settings.HUB_SUBSCRIBER_QUEUE + 1
    message = error["errors"][0]["message"]
    assert message.startswith(f"subscriber fell {settings.HUB_SUBSCRIBER_QUEUE} notifications behind; ")
    assert message.endswith(f"resubscribe with after={seqs[-1]}")
    # Resuming there loses nothing: what it got, then everything after the named seq, is every
    # event once.
    assert seqs + [e.seq for e in events if e.seq > seqs[-1]] == [e.seq for e in events]


# --- what an idle socket holds ------------------------------------------------------------


async def test_a_socket_uses_the_inbox(application, monkeypatch):
    consumers = instances_connected(monkeypatch, consumer_module.GraphQLConsumer)
    socket = await Socket.open(application)
    try:
        op_id = await socket.start(SERVER_NODE)
        assert await socket.result(op_id) == ("next", {"data": {"serverNode": "pytest"}})
        (consumer,) = consumers
        assert isinstance(consumer.inbox, Inbox)
    finally:
        await socket.close()


async def test_an_idle_socket_runs_two_tasks_and_keeps_no_finished_one(application, monkeypatch):
    """After connection_init, a socket's live tasks are the application instance and strawberry's
    protocol handler: Channels' dispatch loop would add a task waiting on `receive()` (the consumer
    reads in a plain loop instead), and strawberry keeps its cancelled init-timeout task, with its
    CancelledError and frames, unless the handler lets go of it."""
    handlers = []
    handle_connection_init = protocols_module.TransportWSHandler.handle_connection_init

    async def recording(self, message):
        handlers.append(self)
        await handle_connection_init(self, message)

    monkeypatch.setattr(protocols_module.TransportWSHandler, "handle_connection_init", recording)
    before = asyncio.all_tasks()
    socket = await Socket.open(application)
    try:
        await asyncio.sleep(0.05)  # let the cancelled timeout task finish
        added = [task.get_coro().__qualname__ for task in asyncio.all_tasks() - before]
        # the communicator runs the application instance in a task of its own, as Daphne does
        assert len(added) == 2 and "AsyncBaseHTTPView.run" in added, added
        (handler,) = handlers
        assert handler.connection_acknowledged
        assert handler.connection_init_timeout_task is None
        # and the socket still works
        op_id = await socket.start(SERVER_NODE)
        assert await socket.result(op_id) == ("next", {"data": {"serverNode": "pytest"}})
    finally:
        await socket.close()
