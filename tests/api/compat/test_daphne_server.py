"""The fast paths into Daphne, autobahn and Twisted (server.compat) against a real Daphne: plain
Daphne, and Daphne as the product's `postwire ws` entry point runs it. The internals they rely
on must be where they expect them: if an upgrade moves them, the probes decline (checked in
test_fast_paths.py) and this fails, loudly, here."""

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import websockets

from devstack.proc import Process, free_port
from server.realtime.sockets import FrameWriter, Write

REPO = Path(__file__).resolve().parents[3]


# These tests exercise the fast paths themselves (tests/plugins/fast_paths.py: where the newest
# lock declines one, the decline is checked instead, and the public path runs everywhere else).
pytestmark = pytest.mark.fast_path(
    "direct_writes", "close_reasons", "flood_limit", "lean_sockets", "sweeps", "keepalive"
)


# Daphne as it ships, and as the product's `postwire ws` entry point runs it (server.ws_main:
# uvloop, and the fast paths that trim Daphne's classes): the fast paths must work on both.
SERVERS = {"daphne": ["-m", "daphne"], "postwire-ws": ["-m", "server.ws_main"]}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def daphne(request, tmp_path_factory):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "services" / "api")]))
    argv = [sys.executable, *SERVERS[request.param], "-b", "127.0.0.1", "-p", str(port), "--ping-interval", "1"]
    argv += ["--ping-timeout", "2", "--application-close-timeout", "1"]
    process = Process(
        f"daphne-{request.param}",
        [*argv, "tests.api.compat.daphne_app:application"],
        log_dir=tmp_path_factory.mktemp("daphne"),
        env=env,
    ).start()
    try:
        process.wait_for_port(port, timeout=30)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        process.stop()


async def test_the_product_entry_point_trims_what_every_socket_keeps(daphne, request):
    """The lean_sockets fast path, seen from inside a socket: Daphne's input queue is an Inbox,
    autobahn's options live on the class, the upgraded HTTP request and autobahn's parse of the
    handshake are let go; what the application reads (scope headers, the request path Daphne
    logs) is still there. Plain Daphne keeps all of it: what this compares against."""
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("kept")
        kept = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert kept["path"] == "/" and kept["scope_headers"] == ["host", "upgrade"]
    trimmed = {k: kept[k] for k in ("input_queue", "upgraded_requests_kept", "handshake_headers", "handshake_bytes")}
    if request.node.callspec.params["daphne"] == "daphne":
        assert trimmed["input_queue"] == "Queue" and trimmed["upgraded_requests_kept"] == 1
        assert trimmed["handshake_headers"] > 3 and trimmed["handshake_bytes"] > 100
        assert len(kept["options_in_instance"]) > 20
    else:
        assert trimmed == {
            "input_queue": "Inbox",
            "upgraded_requests_kept": 0,
            "handshake_headers": 0,
            "handshake_bytes": 0,
        }
        # ConnectionMiddleware sets failByDrop on the socket itself (a 1009 close, not a dropped TCP)
        assert kept["options_in_instance"] == ["failByDrop"]


async def _pings_received(url: str, seconds: float, answer: str = "pong") -> int:
    """Open a WebSocket, stay idle, count the server's pings: each answered with its pong (masked
    with a random key), with a pong that does not match, or not at all (`answer`). -1 if the
    server closed the connection."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    pings, deadline = 0, asyncio.get_running_loop().time() + seconds
    try:
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                b0, b1 = await asyncio.wait_for(reader.readexactly(2), left)
            except TimeoutError:
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                return -1  # dropped (autobahn aborts: a reset)
            payload = await reader.readexactly(b1 & 0x7F)
            if b0 & 0x0F == 0x9:
                pings += 1
                if answer == "wrong pong":
                    payload = bytes(len(payload))
                if answer != "none":
                    key = os.urandom(4)
                    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
                    writer.write(bytes((0x8A, 0x80 | len(payload))) + key + masked)
    finally:
        writer.close()
    return pings


async def test_every_idle_socket_is_pinged_each_ping_interval(daphne):
    """Daphne's keep-alive (--ping-interval 1 here): on the trimmed server the pings due come
    from a heap (fast path sweeps), and must still reach every socket."""
    counts = await asyncio.gather(*(_pings_received(daphne, 4.5) for _ in range(8)))
    assert all(count >= 1 for count in counts), counts


class _Observer:
    """One socket that asks the server what it tracks (it is one of those connections)."""

    def __init__(self, ws):
        self.ws = ws

    async def ask(self) -> dict:
        await self.ws.send("connections")
        return json.loads(await asyncio.wait_for(self.ws.recv(), 5))

    async def until(self, expected: dict, seconds: float = 6.0) -> dict:
        """Ask until the report contains `expected`, or time out; the last report."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not (expected.items() <= (seen := await self.ask()).items()):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        return seen


@pytest.fixture
async def observer(daphne):
    async with websockets.connect(daphne, compression=None) as ws:
        observer = _Observer(ws)
        # Only the observer left: earlier tests' sockets and its own upgrade request forgotten.
        seen = await observer.until({"websockets": 1, "requests": 0})
        assert (seen["websockets"], seen["requests"]) == (1, 0)
        yield observer


async def test_sockets_that_closed_are_forgotten(daphne, observer):
    """Daphne forgets a connection once its client left and its application ended (on the
    trimmed server only the connections something happened to are visited: fast path sweeps)."""
    sockets = [await websockets.connect(daphne, compression=None) for _ in range(5)]
    assert (await observer.ask())["websockets"] == 6
    for ws in sockets:
        await ws.close()
    assert (await observer.until({"websockets": 1, "requests": 0}))["websockets"] == 1


async def test_an_application_that_ignores_its_client_leaving_is_cancelled(daphne, observer):
    """--application-close-timeout 1 here: an application still running a second after its
    client left is cancelled, and its connection forgotten."""
    cancelled = (await observer.ask())["cancelled"]
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("hang")
    await asyncio.sleep(0.5)
    still = await observer.ask()
    assert (still["websockets"], still["cancelled"]) == (2, cancelled)  # its application still runs
    assert await observer.until({"websockets": 1, "cancelled": cancelled + 1}) == {
        "websockets": 1,
        "requests": 0,
        "cancelled": cancelled + 1,
    }


async def test_an_application_that_fails_closes_its_socket_with_1011_and_is_forgotten(daphne, observer):
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("raise")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1011
    assert (await observer.until({"websockets": 1, "requests": 0}))["websockets"] == 1


async def test_a_client_that_answers_its_pings_stays_and_others_are_dropped(daphne):
    """--ping-interval 1 --ping-timeout 2 here. The pong answering the pending ping keeps the
    socket (on the trimmed server it is taken inline: fast path keepalive); a wrong pong or none
    does not, and the server drops the socket."""
    answered, wrong, silent = await asyncio.gather(
        _pings_received(daphne, 6), _pings_received(daphne, 6, "wrong pong"), _pings_received(daphne, 6, "none")
    )
    assert answered >= 2, answered  # still open after 6 s (plain Daphne pings every 2 s at most)
    assert wrong == silent == -1


async def _raw_request(url: str, chunks: list[bytes]) -> bytes:
    """Send a request in the given pieces; the server's status line (b"" if it closed first)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.05)
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


UPGRADE = (
    b"GET /%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
)


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (UPGRADE % (b"", b""), b"101"),
        (UPGRADE % (b"?a=1", b"X-Extra:  padded \t\r\n"), b"101"),
        (UPGRADE % (b"", b"Bad\x0bValue: 1\r\n"), b"400"),  # a header name Daphne refuses
        (UPGRADE % (b"", b"X-Value: a\x0bb\r\n"), b"400"),  # a value byte Daphne refuses
        (UPGRADE % (b"caf\xc3\xa9", b""), b"400"),  # a path that is not ASCII
        (UPGRADE % (b"?q=\xc3\xa9", b""), b"400"),  # a query string that is not ASCII
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),  # not an upgrade: Daphne's HTTP path
    ],
)
async def test_the_handshake_answers_as_daphne_does(daphne, request_bytes, status):
    """The handshake, accepted or refused, is answered the same on plain Daphne and on the
    trimmed server (whose WebSocket protocol class and reads are postwire's: lean_sockets, keepalive)."""
    line = await _raw_request(daphne, [request_bytes])
    assert line.split(b" ")[1:2] == [status], line


async def test_an_upgrade_split_over_two_reads_still_opens(daphne):
    request = UPGRADE % (b"", b"")
    line = await _raw_request(daphne, [request[:40], request[40:]])
    assert line.startswith(b"HTTP/1.1 101"), line


async def test_a_client_offering_compression_is_answered_without_it(daphne):
    """Daphne declines permessage-deflate (autobahn's perMessageCompressionAccept option, a
    function: on the trimmed server it lives on the protocol class and must not turn into a
    method there, or the handshake would never complete)."""
    async with websockets.connect(daphne, open_timeout=5) as ws:  # offers permessage-deflate
        await ws.send("probe")
        probe = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert probe["uncompressed"] is True


async def test_daphne_hands_the_app_a_wire_that_writes_in_order(daphne):
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("probe")
        probe = json.loads(await ws.recv())
        assert probe == {"wire": True, "open": True, "uncompressed": True, "unsent": 0}
        await ws.send("write one,two,three")
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(5)]
        assert got == ["via asgi", "one", "two", "three", "via asgi again"]


async def test_messages_read_but_not_taken_are_counted_with_their_bytes(daphne):
    """What the consumer's flood limit reads: Daphne queues everything it reads, unbounded."""
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("hold 1")
        for n in range(5):
            await ws.send(str(n) * 10_000)
        report = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert report == {"waiting": [5, 50_000]}
        await ws.send("hold 0")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"waiting": [0, 0]}


async def test_a_close_carries_its_code_and_reason(daphne):
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("close 4408 Connection initialisation timeout")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4408
    assert closed.value.rcvd.reason == "Connection initialisation timeout"


async def test_writes_to_a_closed_socket_are_refused_not_raised(daphne):
    """The hub may still hold a subscriber whose socket just went away."""
    async with websockets.connect(daphne, compression=None) as ws:
        await ws.send("close 1000 bye")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)

    # The server side is checked through the app: a write after close returns False. The app has
    # no socket left to report on, so check the wire object directly with a closed protocol.
    class Transport:
        connected, disconnecting, dataBuffer, offset, _tempDataLen = False, True, b"", 0, 0

    class Protocol:
        STATE_OPEN, state, send_queue, transport = 3, 4, [], Transport()

    delivery = type("Delivery", (), {"last_seq": None, "ended": False})()
    assert FrameWriter(Protocol(), 1 << 20).write(delivery, None, "graphql-transport-ws", '"1"', 1) is Write.CLOSED
