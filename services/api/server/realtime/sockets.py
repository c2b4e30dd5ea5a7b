"""One WebSocket as postwire writes to it: frames from the hub, closes with a reason, and what
it holds unsent or unread.

Two ways to write the hub's messages, chosen per connection:
- FrameWriter (fast path `direct_writes`, under Daphne): a pre-built frame straight to the
  socket when nothing is queued ahead of it, else behind what is queued; a socket holding more
  than `max_unsent` bytes it has not taken is too slow.
- AsgiWriter (the public path, any ASGI server): the connection's ASGI `send`, through an
  outbox drained by one task, so a send that blocks holds up only its own socket; a socket
  with `max_queued` messages waiting is too slow.
Either way a message goes out whole and in order, and a subscriber's `last_seq` is the last
seq handed to its socket: the resume point it is told if it is cut off.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from typing import Protocol

from server import compat
from server.compat import autobahn, daphne, twisted


class Write(enum.Enum):
    WRITTEN = "written"
    CLOSED = "closed"  # the socket is gone or going: nothing written
    TOO_SLOW = "too slow"  # nothing written: the subscriber must be cut off


class Delivery(Protocol):
    """What a writer needs of a subscriber (server.realtime.fanout.Subscriber)."""

    last_seq: int | None
    ended: bool


class Message(Protocol):
    """One event's result for one shape (server.realtime.shapes.Rendered)."""

    def frame(self, protocol: str, encoded_id: str) -> bytes: ...
    def text(self, protocol: str, encoded_id: str) -> str: ...


class FrameWriter:
    """Frames to a Daphne socket without the ASGI path (fast path `direct_writes`)."""

    __slots__ = ("protocol", "max_unsent")

    def __init__(self, protocol, max_unsent: int) -> None:
        self.protocol = protocol
        self.max_unsent = max_unsent

    def write(self, delivery: Delivery, message: Message, protocol: str, encoded_id: str, seq: int) -> Write:
        server = self.protocol
        if not autobahn.is_open(server):
            return Write.CLOSED
        held = autobahn.queued_bytes(server)
        if held + twisted.unsent_bytes(server.transport) > self.max_unsent:
            return Write.TOO_SLOW
        frame = message.frame(protocol, encoded_id)
        if held:  # autobahn's own queue (chopped or sync sends): keep behind it
            autobahn.send_behind_queue(server, frame)
        else:
            twisted.write_now(server.transport, frame)
        delivery.last_seq = seq
        return Write.WRITTEN


def write_frame(protocol, frame: bytes) -> None:
    """One whole frame to a Daphne socket, behind whatever is queued (the keep-alive ping)."""
    if not autobahn.is_open(protocol):
        return
    if autobahn.queued_bytes(protocol):
        autobahn.send_behind_queue(protocol, frame)
    else:
        twisted.write_now(protocol.transport, frame)


class AsgiWriter:
    """The hub's messages through the connection's ASGI `send` (the public path)."""

    __slots__ = ("send", "max_queued", "outbox", "task", "closed")

    def __init__(self, send, max_queued: int) -> None:
        self.send = send
        self.max_queued = max_queued
        self.outbox: collections.deque = collections.deque()  # (delivery, seq, text)
        self.task: asyncio.Task | None = None
        self.closed = False

    def write(self, delivery: Delivery, message: Message, protocol: str, encoded_id: str, seq: int) -> Write:
        if self.closed:
            return Write.CLOSED
        if len(self.outbox) >= self.max_queued:
            # What it had queued goes too, so the resume point it is told (the last seq handed to
            # its socket) is followed by everything it missed.
            self.outbox = collections.deque(item for item in self.outbox if item[0] is not delivery)
            return Write.TOO_SLOW
        self.outbox.append((delivery, seq, message.text(protocol, encoded_id)))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain())
        return Write.WRITTEN

    async def _drain(self) -> None:
        try:
            while self.outbox:
                delivery, seq, text = self.outbox.popleft()
                if delivery.ended:
                    continue
                delivery.last_seq = seq  # handed over: what follows an error sent after it
                await self.send({"type": "websocket.send", "text": text})
        except Exception:  # the socket is gone; the consumer's disconnect ends its subscriptions
            self.closed = True
            self.outbox.clear()
        finally:
            self.task = None


class Writer(Protocol):
    def write(self, delivery: Delivery, message: Message, protocol: str, encoded_id: str, seq: int) -> Write: ...


class Connection:
    """A WebSocket's server-side handles: Daphne's connection object where a fast path may use it."""

    __slots__ = ("send", "protocol", "_writer")

    def __init__(self, send) -> None:
        self.send = send
        self.protocol = daphne.protocol_of(send) if _any_fast_path_needs_the_socket() else None
        self._writer: Writer | None = None

    @property
    def writes_frames(self) -> bool:
        return self.protocol is not None and compat.on("direct_writes") and autobahn.uncompressed(self.protocol)

    def writer(self, *, max_unsent: int, max_queued: int) -> Writer:
        """How the hub writes to this socket (decided once the handshake is done, at the first
        subscription: the hub's limits)."""
        if self._writer is None:
            if self.writes_frames:
                self._writer = FrameWriter(self.protocol, max_unsent)
            else:
                self._writer = AsgiWriter(self.send, max_queued)
        return self._writer

    def unsent_bytes(self) -> int | None:
        """Bytes written that the client has not taken yet; None where that cannot be known."""
        if self.protocol is None or not compat.on("direct_writes"):
            return None
        return twisted.unsent_bytes(self.protocol.transport) + autobahn.queued_bytes(self.protocol)

    def waiting(self) -> tuple[int, int]:
        """Messages (and their bytes) the server has read from this socket and not handed over."""
        if self.protocol is None or not compat.on("flood_limit"):
            return 0, 0
        return daphne.waiting(self.protocol)

    def is_open(self) -> bool:
        return self.protocol is not None and autobahn.is_open(self.protocol)

    def close_with_reason(self, code: int, reason: str) -> bool:
        """Close with a code and a reason the client can read; False if this server gives no
        way to (then the ASGI close, whose reason Daphne drops, is the caller's)."""
        if self.protocol is None or not compat.on("close_reasons") or not autobahn.is_open(self.protocol):
            return False
        autobahn.close(self.protocol, code, reason)
        return True

    def prepare(self, send_buffer: int) -> None:
        """Once per connection, before the handshake completes."""
        if self.protocol is None:
            return
        if compat.on("close_reasons"):
            autobahn.close_properly_on_violation(self.protocol)
        if send_buffer and compat.on("direct_writes"):
            # What a stalled reader pins in the kernel, before the unsent-bytes limit (which
            # sees only what the kernel refused) takes over.
            twisted.set_send_buffer(self.protocol.transport, send_buffer)


SCOPE_KEY = "postwire.connection"


class ConnectionMiddleware:
    """Outermost WebSocket middleware: the connection's handles, made from the server's own
    `send` (middlewares further in, Channels' sessions among them, wrap it), put in the scope
    for the consumer (`scope["postwire.connection"]`)."""

    def __init__(self, inner, *, send_buffer: int = 0) -> None:
        self.inner = inner
        self.send_buffer = send_buffer

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "websocket":
            connection = Connection(send)
            connection.prepare(self.send_buffer)
            # In place, not a copy: Daphne makes a scope per connection and never reads it back,
            # and a copy held by this frame would cost every idle socket its size.
            scope[SCOPE_KEY] = connection
        return await self.inner(scope, receive, send)


def _any_fast_path_needs_the_socket() -> bool:
    return compat.on("direct_writes") or compat.on("close_reasons") or compat.on("flood_limit")
