"""A real fault between the load tester and nginx: a TCP proxy that understands just enough of
WebSocket framing to swallow, or duplicate, one server->client text frame.

The first frame whose payload contains `drop` is not forwarded (one subscriber misses one
notification, exactly as if the server had lost it); the first frame containing `duplicate` is
forwarded twice. Everything else passes byte for byte. The handshake's
Sec-WebSocket-Extensions header is removed so that frames stay uncompressed and readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class FaultProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, *, drop: bytes | None = None, duplicate: bytes | None = None
    ):
        self.upstream = (upstream_host, upstream_port)
        self.drop_marker = drop
        self.duplicate_marker = duplicate
        self.dropped: list[int] = []  # connection numbers whose frame was swallowed
        self.duplicated: list[int] = []
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    # --- lifecycle (the proxy runs on its own loop in a thread; tests stay synchronous) ---------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    # --- one proxied connection ------------------------------------------------------------

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        upstream_w = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
            request = await client_r.readuntil(b"\r\n\r\n")
            lines = [
                line for line in request.split(b"\r\n") if not line.lower().startswith(b"sec-websocket-extensions:")
            ]
            upstream_w.write(b"\r\n".join(lines))
            to_server = asyncio.create_task(self._pipe(client_r, upstream_w))
            client_w.write(await upstream_r.readuntil(b"\r\n\r\n"))
            await self._frames(upstream_r, client_w, conn_id)
            to_server.cancel()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int) -> None:
        """Server->client frames (RFC 6455 5.2; a server never masks)."""
        while True:
            head = await reader.readexactly(2)
            fin_opcode, length = head[0], head[1] & 0x7F
            extended = b""
            if length == 126:
                extended = await reader.readexactly(2)
                length = int.from_bytes(extended, "big")
            elif length == 127:
                extended = await reader.readexactly(8)
                length = int.from_bytes(extended, "big")
            mask = await reader.readexactly(4) if head[1] & 0x80 else b""
            payload = await reader.readexactly(length)
            frame = head + extended + mask + payload
            is_text = fin_opcode == 0x81
            if is_text and self.drop_marker and not self.dropped and self.drop_marker in payload:
                self.dropped.append(conn_id)
                continue
            if is_text and self.duplicate_marker and not self.duplicated and self.duplicate_marker in payload:
                self.duplicated.append(conn_id)
                writer.write(frame)
            writer.write(frame)
            await writer.drain()
