"""A minimal ASGI app for tests/api/realtime/test_wire.py, run by a real Daphne: every message a
client sends is a command to the connection's DaphneWire (no Django involved)."""

import asyncio
import json

from server.realtime.wire import WireMiddleware, frame_header, wire_of

cancelled = 0  # applications Daphne cancelled for not ending after their client left


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
    wire = wire_of(scope)
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
            kinds = [type(protocol).__name__ for protocol in wire.protocol.server.connections]
            report = {
                "websockets": sum(kind == "WebSocketProtocol" for kind in kinds),
                "requests": sum(kind == "WebRequest" for kind in kinds),  # upgrades not yet forgotten
                "cancelled": cancelled,
            }
            await send({"type": "websocket.send", "text": json.dumps(report)})
        elif command == "probe":
            await send(
                {
                    "type": "websocket.send",
                    "text": json.dumps(
                        {
                            "wire": wire is not None,
                            "open": wire is not None and wire.is_open,
                            "uncompressed": wire is not None and wire.uncompressed,
                            "unsent": wire.unsent_bytes() if wire else None,
                        }
                    ),
                }
            )
        elif command == "kept":
            # What this socket keeps that server.realtime.lean_daphne trims.
            protocol = wire.protocol
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
            for text in command[6:].split(","):
                payload = text.encode()
                assert wire.write(frame_header(len(payload)) + payload, 1 << 20) == 1
            await send({"type": "websocket.send", "text": "via asgi again"})
        elif command.startswith("hold "):
            # Stop taking messages for a while, then report what queued up meanwhile.
            await asyncio.sleep(float(command[5:]))
            await send({"type": "websocket.send", "text": json.dumps({"waiting": wire.waiting()})})
        elif command.startswith("close "):
            code, reason = command[6:].split(" ", 1)
            wire.close(int(code), reason)


application = WireMiddleware(app)
