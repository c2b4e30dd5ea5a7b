"""A lean WebSocket client (RFC 6455) for thousands of subscribers in one process.

Each socket is an asyncio Protocol that parses frames in `data_received` and hands every text
message to a callback, synchronously: no task, queue, future or event object per message, which
is where general-purpose clients (websockets, wsproto) spend most of a receipt's CPU. On a
2-core machine the generator's CPU is part of every latency it reports, so this is the hot path.

It does only what a GraphQL subscriber needs: the opening handshake with one subprotocol, text
messages (fragmented too), ping/pong, the closing handshake. No extensions (compression costs a
zlib context per socket and hides frames from fault-injecting proxies).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class HandshakeRefused(Exception):
    def __init__(self, status: int, reason: str = ""):
        super().__init__(f"handshake refused with HTTP {status} {reason}".rstrip())
        self.status = status


class ProtocolError(Exception):
    pass


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final frame (clients must mask every frame they send)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class ClientProtocol(asyncio.Protocol):
    """One client WebSocket. `on_text(payload)` is called for every text message, in order, with
    its UTF-8 bytes (undecoded: a JSON parser takes bytes); `on_close(code | None)` once, when the
    connection ends (None: no close frame, i.e. lost)."""

    def __init__(
        self,
        url: str,
        subprotocol: str,
        on_text: Callable[[bytes], None],
        on_close: Callable[[int | None], None],
        user_agent: str = "postwire-loadtest",
    ):
        parts = urlsplit(url)
        self._request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._host = parts.netloc
        self._subprotocol = subprotocol
        self._user_agent = user_agent
        self._key = base64.b64encode(os.urandom(16))
        self._on_text = on_text
        self._on_close = on_close
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._handshaking = True
        self._close_code: int | None = None
        self._closing = False
        self._ended = False
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(
            f"GET {self._request_target} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {self._subprotocol}\r\nUser-Agent: {self._user_agent}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        # The common case, by far: one whole unfragmented text frame under 126 bytes' header form
        # or with a 16-bit length, and nothing buffered.
        if not self._buffer and not self._handshaking and self._fragments is None and len(data) > 2 and data[0] == 0x81:
            length = data[1]
            if length < 126 and len(data) == 2 + length:
                self._on_text(data[2:])
                return
            if length == 126 and len(data) >= 4 and len(data) == 4 + ((data[2] << 8) | data[3]):
                self._on_text(data[4:])
                return
        buffer = self._buffer + data if self._buffer else data
        try:
            if self._handshaking:
                buffer = self._handshake(buffer)
                if buffer is None:
                    return
            self._buffer = self._frames(buffer)
        except (ProtocolError, HandshakeRefused, ValueError) as exc:
            if not self.opened.done():
                self.opened.set_exception(exc)
                self.opened.exception()
            self._buffer = b""
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
            self.opened.exception()  # retrieved: whoever awaits it still gets it
        if not self._ended:
            self._ended = True
            self._on_close(self._close_code)

    # --- receiving ----------------------------------------------------------------------------

    def _handshake(self, buffer: bytes) -> bytes | None:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEADER_BYTES:
                raise ProtocolError("handshake response headers too large")
            self._buffer = buffer
            return None
        head, rest = buffer[:end].decode("latin-1"), buffer[end + 4 :]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            raise HandshakeRefused(status, parts[2] if len(parts) > 2 else "")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ProtocolError("bad Sec-WebSocket-Accept")
        if headers.get("sec-websocket-protocol") != self._subprotocol:
            raise ProtocolError(f"server chose subprotocol {headers.get('sec-websocket-protocol')!r}")
        self._handshaking = False
        self.opened.set_result(self._subprotocol)
        return rest

    def _frames(self, buffer: bytes) -> bytes:
        """Handle every complete frame in `buffer`; return the incomplete rest."""
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            b0, b1 = buffer[pos], buffer[pos + 1]
            if b1 & 0x80:
                raise ProtocolError("the server masked a frame")
            length, header = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            if length > MAX_MESSAGE_BYTES:
                raise ProtocolError("frame too large")
            end = pos + header + length
            if end > size:
                break
            payload = buffer[pos + header : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 1 and b0 & 0x80 and self._fragments is None:
                self._on_text(payload)  # one whole text message
            elif opcode in (0, 1, 2):
                self._fragment(opcode, payload, bool(b0 & 0x80))
            elif opcode == 9:
                self._send(10, payload)  # pong
            elif opcode == 8:
                self._close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self._closing:
                    self._send(8, payload[:2])
                self._closing = True
                self.transport.close()
                return b""
        return buffer[pos:] if pos else buffer

    def _fragment(self, opcode: int, payload: bytes, final: bool) -> None:
        if opcode == 2:
            raise ProtocolError("binary message")
        if opcode == 1:
            if self._fragments is not None:
                raise ProtocolError("new message inside a fragmented one")
            self._fragments = []
        elif self._fragments is None:
            raise ProtocolError("continuation frame outside a message")
        self._fragments.append(payload)
        if final:
            text, self._fragments = b"".join(self._fragments), None
            self._on_text(text)

    # --- sending ------------------------------------------------------------------------------

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))

    def send_text(self, text: str) -> None:
        if not self._closing:
            self._send(1, text.encode())

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake (the server answers and closes the TCP connection)."""
        if not self._closing and not self._handshaking:
            self._closing = True
            self._send(8, code.to_bytes(2, "big"))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def close_code(self) -> int | None:
        return self._close_code
