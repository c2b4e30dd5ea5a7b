"""A minimal ASGI app for tests/api/compat/test_daphne_server.py, run by a real Daphne: every
message a client sends is a command to the connection's handles (server.realtime.sockets), which
reach Daphne, autobahn and Twisted through server.compat (no Django involved)."""

import asyncio
import json
from types import SimpleNamespace

from server.compat import autobahn
from server.realtime.shapes import frame_header
from server.realtime.sockets import SCOPE_KEY, ConnectionMiddleware, FrameWriter, Write

cancelled = 0  # applications Daphne cancelled for not ending after their client left


class Text:
    """A hub message that is just this text."""

    def __init__(self, text: str) -> None:
        self.payload = text

    def text(self, protocol, encoded_id) -> str:
        return self.payload

    def frame(self, protocol, encoded_id) -> bytes:
        data = self.payload.encode()
        return frame_header(len(data)) + data


async def _hang() -> None:
    global cancelled
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled += 1
        raise


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    connection = scope[SCOPE_KEY]
    protocol = connection.protocol
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    hang_on_disconnect = False
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            if hang_on_disconnect:
                await _hang()
            return
        command = event.get("text", "")
        if command == "hang":
            hang_on_disconnect = True  # ignore the client leaving: Daphne must cancel this app
        elif command == "raise":
            raise RuntimeError("the application failed")  # Daphne closes the socket with 1011
        elif command == "connections":
            # What the server still tracks: its connections and the apps it had to cancel.
            kinds = [type(tracked).__name__ for tracked in protocol.server.connections]
            report = {
                "websockets": sum(kind == "WebSocketProtocol" for kind in kinds),
                "requests": sum(kind == "WebRequest" for kind in kinds),  # upgrades not yet forgotten
                "cancelled": cancelled,
            }
            await send({"type": "websocket.send", "text": json.dumps(report)})
        elif command == "probe":
            probe = {
                "wire": connection.writes_frames,
                "open": connection.is_open(),
                "uncompressed": protocol is not None and autobahn.uncompressed(protocol),
                "unsent": connection.unsent_bytes(),
            }
            await send({"type": "websocket.send", "text": json.dumps(probe)})
        elif command == "kept":
            # What this socket keeps that the lean_sockets fast path trims.
            channel = getattr(protocol.transport, "producer", None)
            kept = {
                "input_queue": type(protocol.application_queue).__name__,
                "options_in_instance": sorted(set(protocol.CONFIG_ATTRS) & set(vars(protocol))),
                "upgraded_requests_kept": len(getattr(channel, "requests", ())),
                "handshake_headers": len(protocol.http_headers),
                "handshake_bytes": len(protocol.http_request_data),
                "path": protocol.request.path,
                "scope_headers": sorted(k.decode() for k, _ in scope["headers"] if k in (b"host", b"upgrade")),
            }
            await send({"type": "websocket.send", "text": json.dumps(kept)})
        elif command.startswith("write "):
            # Interleave the ASGI path and direct writes: order must hold.
            await send({"type": "websocket.send", "text": "via asgi"})
            writer = FrameWriter(protocol, 1 << 20)
            delivery = SimpleNamespace(last_seq=None, ended=False)
            for n, text in enumerate(command[6:].split(",")):
                assert writer.write(delivery, Text(text), "graphql-transport-ws", '"1"', n) is Write.WRITTEN
            await send({"type": "websocket.send", "text": "via asgi again"})
        elif command.startswith("hold "):
            # Stop taking messages for a while, then report what queued up meanwhile.
            await asyncio.sleep(float(command[5:]))
            await send({"type": "websocket.send", "text": json.dumps({"waiting": connection.waiting()})})
        elif command.startswith("close "):
            code, reason = command[6:].split(" ", 1)
            assert connection.close_with_reason(int(code), reason)


application = ConnectionMiddleware(app)
