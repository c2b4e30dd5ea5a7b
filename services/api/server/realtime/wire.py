"""Writing WebSocket frames straight from the hub: the one module that reaches into Daphne,
autobahn and Twisted internals.

Sending through the ASGI path costs a task hop, a JSON encoding, the Channels session wrapper,
`daphne.server.handle_reply`, autobahn's `sendMessage` and Twisted's `write`, which arms and
disarms the reactor's writer (two `epoll_ctl`) for every frame. The hub instead writes a
pre-built frame: straight to the socket when nothing is queued ahead of it (one `send()`),
otherwise behind what is queued, through Twisted's `write`, so order always holds.

What this relies on is checked by `check_supported()` and pinned by
`tests/api/realtime/test_wire.py`, which runs a real Daphne: the ASGI `send` Daphne hands an
application is `functools.partial(Server.handle_reply, protocol)`; the protocol is an autobahn
`WebSocketServerProtocol` (`state`, `send_queue`, `_perMessageCompress`, `sendCloseFrame`) over a
Twisted TCP transport (`socket`, `dataBuffer`, `offset`, `_tempDataLen`, `connected`,
`disconnecting`). On other versions, or another ASGI server, `wire_for()` returns None and the
hub falls back to the plain path (strawberry executes and sends per subscriber): slower, correct.

Daphne's keep-alive goes the same way on the trimmed server (server.realtime.lean_daphne and
daphne_sweeps): the ping is written like a hub frame and the pong answering it is taken before
autobahn's frame parser (`send_auto_ping`, `take_auto_pong`), with autobahn's own ping state
(`autoPingPending`, `autoPingTimeoutCall`, the factory's `_batched_timer`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import socket
import struct
import time

from server.realtime.inbox import Inbox

log = logging.getLogger(__name__)

# package -> the release series this module was written and tested against
SUPPORTED = {"daphne": "4.2.", "autobahn": "26.10.", "twisted": "26.10."}

SCOPE_KEY = "postwire.wire"

# Every accepted-or-accepting WebSocket of this process that has a wire: what a drain closes.
OPEN: set[DaphneWire] = set()


@functools.cache
def check_supported() -> str | None:
    """None when the installed Daphne/autobahn/Twisted are the ones this module knows; else why not."""
    for package, series in SUPPORTED.items():
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return f"{package} is not installed"
        if not version.startswith(series):
            return f"{package} {version} is not the supported {series}x series"
    try:
        from autobahn.websocket.protocol import WebSocketProtocol
        from daphne.server import Server
        from twisted.internet.abstract import FileDescriptor
    except ImportError as exc:
        return f"cannot import the server internals: {exc}"
    for owner, names in (
        (Server, ("handle_reply",)),
        (WebSocketProtocol, ("STATE_OPEN", "sendCloseFrame", "sendData", "_sendAutoPing", "onAutoPingTimeout")),
        (FileDescriptor, ("dataBuffer", "offset", "write")),
    ):
        missing = [name for name in names if not hasattr(owner, name)]
        if missing:
            return f"{owner.__module__}.{owner.__qualname__} lacks {', '.join(missing)}"
    return None


def frame_header(payload_length: int) -> bytes:
    """A server-to-client text frame's header (FIN, opcode 1, no mask), as RFC 6455 5.2 lays out."""
    if payload_length < 126:
        return bytes((0x81, payload_length))
    if payload_length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, payload_length)
    return struct.pack("!BBQ", 0x81, 127, payload_length)


class DaphneWire:
    """One accepted WebSocket under Daphne, written to without going through the ASGI app."""

    __slots__ = ("protocol", "_open_state")

    def __init__(self, protocol) -> None:
        self.protocol = protocol
        self._open_state = protocol.STATE_OPEN

    @property
    def is_open(self) -> bool:
        protocol = self.protocol
        transport = protocol.transport
        return (
            protocol.state == self._open_state
            and transport is not None
            and transport.connected
            and not transport.disconnecting
        )

    @property
    def uncompressed(self) -> bool:
        """Pre-built frames are plain text frames: usable only without permessage-deflate (which
        Daphne never negotiates; checked once the handshake is done)."""
        return getattr(self.protocol, "_perMessageCompress", None) is None

    def unsent_bytes(self) -> int:
        """Bytes written to this socket that it has not taken yet (Twisted's and autobahn's queues)."""
        protocol = self.protocol
        transport = protocol.transport
        if transport is None:
            return 0
        queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if protocol.send_queue:
            queued += sum(len(data) for data, _ in protocol.send_queue)
        return queued

    def waiting(self) -> tuple[int, int]:
        """Messages (and their bytes) Daphne has read from this socket that the application has
        not taken yet. Daphne reads without flow control into an unbounded queue, so this is what
        a flooding client grows."""
        queue = self.protocol.application_queue
        count = queue.qsize()
        if count == 0:
            return 0, 0
        waiting = queue.items() if isinstance(queue, Inbox) else queue._queue  # asyncio.Queue: untrimmed Daphne
        return count, sum(len(m.get("text") or m.get("bytes") or b"") for m in waiting)

    def write(self, frame: bytes, max_unsent: int | None = None) -> int:
        """Write one complete pre-built frame: 1 if written, 0 if the socket is no longer open,
        -1 (nothing written) if it already holds more than `max_unsent` bytes it has not taken."""
        protocol = self.protocol
        transport = protocol.transport
        if (
            protocol.state != self._open_state
            or transport is None
            or not transport.connected
            or transport.disconnecting
        ):
            return 0
        queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if protocol.send_queue:  # autobahn's own queue (chopped or sync sends): keep behind it
            if max_unsent is not None and queued + sum(len(d) for d, _ in protocol.send_queue) > max_unsent:
                return -1
            protocol.sendData(frame)
            return 1
        if max_unsent is not None and queued > max_unsent:
            return -1
        if not queued:
            # Nothing queued ahead: hand it to the kernel now, without arming the reactor.
            try:
                sent = transport.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # a dead peer: Twisted's write path notices and closes it
            if sent == len(frame):
                return 1
            frame = frame[sent:]
        transport.write(frame)
        return 1

    def close(self, code: int, reason: str = "") -> None:
        """Close with a code and a reason the client can read (Daphne's own close drops the reason)."""
        protocol = self.protocol
        if protocol.state == self._open_state:
            protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123] or None)


# Daphne's keep-alive, the ping out and the pong back, without autobahn's general frame machinery:
# at 20 s per socket, 3,333 idle sockets are ~170 pings and pongs a second per node, and py-spy
# put ~60% of such a node's CPU in them (autobahn's sendFrame and Twisted's writer arming for
# the ping; Twisted's read, autobahn's frame parser, a C-level XOR masker built per frame and
# debug-log arguments formatted for lines never written, for the pong).


def send_auto_ping(protocol) -> None:
    """autobahn's WebSocketProtocol._sendAutoPing (26.10): the same payload (send time, sequence
    number), pending state and pong timeout, with the frame written as the hub writes frames."""
    if protocol.state != protocol.STATE_OPEN:
        return
    protocol.autoPingPendingCall = None
    protocol.autoPingPendingSent = sent = time.time_ns()
    protocol.autoPingPendingSeq += 1
    payload = struct.pack(">QL", sent, protocol.autoPingPendingSeq) + os.urandom(protocol.autoPingSize - 12)
    protocol.autoPingPending = payload
    DaphneWire(protocol).write(bytes((0x89, len(payload))) + payload)
    if protocol.autoPingTimeout:
        protocol.autoPingTimeoutCall = protocol.factory._batched_timer.call_later(
            protocol.autoPingTimeout, protocol.onAutoPingTimeout
        )


def take_auto_pong(protocol, data: bytes) -> bool:
    """If `data` is exactly one masked pong frame answering the pending auto-ping, at a frame
    boundary, do what autobahn's processControlFrame does with it and return True; anything else
    (another frame, a split or coalesced read, a pong that does not match) is autobahn's."""
    pending = protocol.autoPingPending
    length = len(data) - 6
    if (
        pending is None
        or length != len(pending)
        or data[0] != 0x8A  # FIN + pong
        or data[1] != 0x80 | length  # masked, as a client's frames must be
        or protocol.data  # bytes of an unfinished frame buffered
        or protocol.current_frame is not None
        or protocol.state != protocol.STATE_OPEN
    ):
        return False
    key = (data[2:6] * (length // 4 + 1))[:length]
    payload = (int.from_bytes(data[6:], "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    if payload != pending:
        return False
    if protocol.autoPingTimeoutCall:
        protocol.autoPingTimeoutCall.cancel()
    protocol.autoPingPending = None
    protocol.autoPingPendingSent = None
    protocol.autoPingTimeoutCall = None
    if protocol.autoPingInterval:  # autobahn's own ping timer (Daphne pings from its sweep instead)
        protocol.autoPingPendingCall = protocol.factory._batched_timer.call_later(
            protocol.autoPingInterval, protocol._sendAutoPing
        )
    return True


@functools.cache
def _handle_reply():
    from daphne.server import Server

    return Server.handle_reply


def _daphne_protocol(send):
    if isinstance(send, functools.partial) and getattr(send.func, "__func__", None) is _handle_reply():
        protocol = send.args[0] if send.args else None
        transport = getattr(protocol, "transport", None)
        # Plain TCP only: a TLS transport has no socket of its own to write to.
        if transport is not None and hasattr(transport, "socket") and hasattr(transport, "dataBuffer"):
            return protocol
    return None


class WireMiddleware:
    """Outermost WebSocket middleware: puts this connection's `DaphneWire` in the scope, when there
    is one, for the hub to write to (`scope["postwire.wire"]`)."""

    def __init__(self, inner, send_buffer: int = 0) -> None:
        self.inner = inner
        self.send_buffer = send_buffer
        self.reason = check_supported()
        if self.reason is not None:
            log.warning("direct frame writes are off (%s): subscribers get the plain path", self.reason)

    async def __call__(self, scope, receive, send):
        if self.reason is None and scope.get("type") == "websocket":
            protocol = _daphne_protocol(send)
            if protocol is not None:
                # autobahn drops the TCP connection on a protocol violation (an over-size frame,
                # say) unless told to close it properly: then the client reads 1009 and why.
                protocol.failByDrop = False
                if self.send_buffer:
                    # A fixed kernel send buffer instead of Linux's autotuned one (up to 4 MiB on
                    # loopback): what a stalled reader pins in the kernel, before the unsent-bytes
                    # limit (which sees only what the kernel refused) takes over.
                    protocol.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
                # In place, not a copy: Daphne makes a scope per connection and never reads it
                # back, and a copy held by this frame would cost every idle socket its size.
                wire = scope[SCOPE_KEY] = DaphneWire(protocol)
                OPEN.add(wire)
                try:
                    return await self.inner(scope, receive, send)
                finally:
                    OPEN.discard(wire)
        return await self.inner(scope, receive, send)


def stop_listening() -> int:
    """Close Daphne's listening sockets (a draining node takes no new connections: a proxy's
    connect is refused and goes to another node), keeping the ones already accepted."""
    from twisted.internet import reactor, tcp

    ports = [reader for reader in reactor.getReaders() if isinstance(reader, tcp.Port)]
    for port in ports:
        port.stopListening()
    return len(ports)


def wire_of(scope) -> DaphneWire | None:
    return scope.get(SCOPE_KEY)
