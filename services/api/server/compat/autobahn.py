"""autobahn internals: the WebSocket protocol object under each Daphne connection.

Checked against: autobahn 26.10.2 and 26.11.1 (release series 26.10, 26.11).
Names used:
  WebSocketProtocol: state, STATE_OPEN, send_queue, sendData, sendCloseFrame, transport, factory,
    failByDrop, CONFIG_ATTRS, http_headers, http_request_data, data, current_frame,
    _perMessageCompress, _dataReceived, _sendAutoPing (copied), processControlFrame (its pong
    part copied), onAutoPingTimeout, autoPingPending, autoPingPendingSent, autoPingPendingSeq,
    autoPingPendingCall, autoPingTimeoutCall, autoPingSize, autoPingTimeout, autoPingInterval
  WebSocketServerFactory: setProtocolOptions (wrapped), protocol, _batched_timer
  autobahn.twisted.websocket.WebSocketServerProtocol.dataReceived (bypassed: it formats a debug
    line's arguments on every read, logged or not)
"""

from __future__ import annotations

import functools
import os
import struct
import time

from server.compat import checks

PACKAGE, CHECKED = "autobahn", ("26.10", "26.11")
# Names of theirs distinctive enough that postwire's code outside this package must not use
# them (tests/api/compat/test_boundary.py).
INTERNALS = (
    "send_queue",
    "sendCloseFrame",
    "sendData",
    "failByDrop",
    "CONFIG_ATTRS",
    "http_headers",
    "http_request_data",
    "current_frame",
    "autoPingPending",
    "autoPingPendingSent",
    "autoPingPendingSeq",
    "autoPingPendingCall",
    "autoPingTimeoutCall",
    "autoPingSize",
    "setProtocolOptions",
    "STATE_OPEN",
)

SOURCES = {
    "autobahn.websocket.protocol.WebSocketProtocol.sendData": "5dcca425b048b07e",
    "autobahn.websocket.protocol.WebSocketProtocol.sendCloseFrame": "a511406d6b0d711e",
    "autobahn.websocket.protocol.WebSocketProtocol._connectionMade": "7ac58d8bb6c3c752",
    "autobahn.websocket.protocol.WebSocketProtocol._sendAutoPing": "344058949ed67de3",
    "autobahn.websocket.protocol.WebSocketProtocol.processControlFrame": "e308aea98264899e",
    "autobahn.twisted.websocket.WebSocketServerProtocol.dataReceived": "7997f762de218433",
}

PROTOCOL = "autobahn.websocket.protocol.WebSocketProtocol"


def _sources(*names: str) -> str | None:
    return checks.unchanged({f"autobahn.{name}": SOURCES[f"autobahn.{name}"] for name in names})


@functools.cache
def _base() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.missing(PROTOCOL, ("STATE_OPEN", "sendData", "sendCloseFrame")),
        checks.missing("autobahn.websocket.protocol.WebSocketServerProtocol", ("CONFIG_ATTRS",)),
    )


def probe_frames() -> str | None:
    return checks.first(
        _base(),
        _sources("websocket.protocol.WebSocketProtocol.sendData"),
        checks.assigned_in(PROTOCOL, ("state", "send_queue", "_perMessageCompress", "transport")),
    )


def probe_close() -> str | None:
    return checks.first(_base(), _sources("websocket.protocol.WebSocketProtocol.sendCloseFrame"))


def probe_lean() -> str | None:
    return checks.first(
        _base(),
        checks.missing("autobahn.websocket.protocol.WebSocketServerFactory", ("setProtocolOptions",)),
        _sources("websocket.protocol.WebSocketProtocol._connectionMade"),
        checks.assigned_in(
            "autobahn.websocket.protocol.WebSocketServerProtocol", ("http_headers", "http_request_data")
        ),
    )


def probe_keepalive() -> str | None:
    return checks.first(
        _base(),
        _sources(
            "websocket.protocol.WebSocketProtocol._sendAutoPing",
            "websocket.protocol.WebSocketProtocol.processControlFrame",
            "twisted.websocket.WebSocketServerProtocol.dataReceived",
        ),
        checks.missing(PROTOCOL, ("_dataReceived", "onAutoPingTimeout", "_sendAutoPing")),
        checks.assigned_in(
            PROTOCOL,
            (
                "autoPingPending",
                "autoPingPendingSent",
                "autoPingPendingSeq",
                "autoPingPendingCall",
                "autoPingTimeoutCall",
            ),
        ),
        _daphne_keeps_autobahns_pong_callbacks(),
    )


def _daphne_keeps_autobahns_pong_callbacks() -> str | None:
    """The inline pong skips onAutoPong and onPong: only right while Daphne does not use them."""
    from autobahn.websocket.protocol import WebSocketProtocol
    from daphne.ws_protocol import WebSocketProtocol as Daphne

    for name in ("onAutoPong", "onPong"):
        if getattr(Daphne, name) is not getattr(WebSocketProtocol, name):
            return f"daphne.ws_protocol.WebSocketProtocol overrides {name}"
    return None


# --- one connection -----------------------------------------------------------------------


def is_open(protocol) -> bool:
    transport = protocol.transport
    return (
        protocol.state == protocol.STATE_OPEN
        and transport is not None
        and transport.connected
        and not transport.disconnecting
    )


def uncompressed(protocol) -> bool:
    """Pre-built frames are plain text frames: usable only without permessage-deflate (which
    Daphne never negotiates; read once the handshake is done)."""
    return getattr(protocol, "_perMessageCompress", None) is None


def queued_bytes(protocol) -> int:
    """What autobahn holds back itself (chopped or synchronous sends), ahead of any new write."""
    queue = protocol.send_queue
    return sum(len(data) for data, _ in queue) if queue else 0


def send_behind_queue(protocol, frame: bytes) -> None:
    """Queue a whole frame behind what autobahn holds back, as its own sends would be."""
    protocol.sendData(frame)


def close(protocol, code: int, reason: str) -> None:
    """A close frame with the code and the reason (sendClose refuses codes such as 1008 and 1012)."""
    if protocol.state == protocol.STATE_OPEN:
        protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123] or None)


def close_properly_on_violation(protocol) -> None:
    """autobahn drops the TCP connection on a protocol violation (an over-size frame, say)
    unless told to close properly: then the client reads 1009 and why."""
    protocol.failByDrop = False


# --- fewer objects per connection (lean_sockets) ------------------------------------------


class _HandshakeForgotten:
    """Lets go of autobahn's parse of the opening handshake once the socket is open: the raw
    request and its headers as a dict of strings. Only the handshake
    reads them; Daphne has copied the headers into the ASGI scope, which keeps them."""

    def onOpen(self):
        super().onOpen()
        self.http_headers.clear()  # the same dict as the ConnectionRequest's that Daphne keeps
        self.http_request_data = b""


class _LeanReads:
    """Reads without the debug line whose arguments autobahn formats on every read, logged or
    not; the pong answering the keep-alive ping is taken first (take_auto_pong)."""

    def dataReceived(self, data):
        if not take_auto_pong(self, data):
            self._dataReceived(data)


def _as_class_attribute(value):
    """A function among the options (perMessageCompressionAccept) must not become a method."""
    return staticmethod(value) if hasattr(type(value), "__get__") else value


def install_protocol_class(factory_class, *, lean: bool, keepalive: bool) -> None:
    """Every time Daphne configures its factory, derive its protocol class: with `lean`, the
    factory's options as class attributes (autobahn copies an option into each instance only
    when the instance lacks it) and the handshake let go; with
    `keepalive`, reads that take the keep-alive pong inline."""
    original = factory_class.setProtocolOptions
    mixins = tuple(m for m, wanted in ((_HandshakeForgotten, lean), (_LeanReads, keepalive)) if wanted)

    def set_protocol_options(self, *args, **kwargs):
        original(self, *args, **kwargs)
        base = getattr(self.protocol, "_postwire_base", self.protocol)
        options = {name: _as_class_attribute(getattr(self, name)) for name in base.CONFIG_ATTRS} if lean else {}
        namespace = {**options, "_postwire_base": base, "__module__": __name__}
        self.protocol = type(base.__name__, (*mixins, base), namespace)

    factory_class.setProtocolOptions = set_protocol_options


# --- Daphne's keep-alive without autobahn's frame machinery (keepalive) --------------------
#
# Every idle socket is pinged every 20 s: for a node holding thousands, the ping and its pong
# through autobahn's general frame machinery were most of its idle CPU (docs/decisions/005).


def send_auto_ping(protocol, write) -> None:
    """autobahn's WebSocketProtocol._sendAutoPing (26.10): the same payload (send time, sequence
    number), pending state and pong timeout, with the frame handed to `write(frame)`."""
    if protocol.state != protocol.STATE_OPEN:
        return
    protocol.autoPingPendingCall = None
    protocol.autoPingPendingSent = sent = time.time_ns()
    protocol.autoPingPendingSeq += 1
    payload = struct.pack(">QL", sent, protocol.autoPingPendingSeq) + os.urandom(protocol.autoPingSize - 12)
    protocol.autoPingPending = payload
    write(protocol, bytes((0x89, len(payload))) + payload)
    if protocol.autoPingTimeout:
        protocol.autoPingTimeoutCall = protocol.factory._batched_timer.call_later(
            protocol.autoPingTimeout, protocol.onAutoPingTimeout
        )


def send_stock_ping(protocol) -> None:
    """autobahn's own keep-alive ping, as Daphne's check_timeouts sends it."""
    protocol._sendAutoPing()


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
