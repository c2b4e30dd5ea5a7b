"""The WebSocket consumer: strawberry's, without a channel-layer channel per socket.

A Channels consumer normally opens its own layer channel and keeps a `receive()` on it for its
whole life. With the per-process hub, sockets never receive from the layer, so that channel is
pure cost: one more Redis reader per socket, and a Redis outage would raise in every socket's
receive and close every WebSocket. Without it, only the hub talks to Redis and sockets stay
open through a Redis restart.

What the socket reads waits in an Inbox for the protocol handler (server.realtime.protocols),
bounded: a client that outpaces the server is closed (1008) rather than buffered without bound.
"""

from __future__ import annotations

import logging

from strawberry.channels import GraphQLWSConsumer

from server import compat, json_input
from server.compat import channels as channels_compat
from server.compat import strawberry as strawberry_compat
from server.realtime import sockets
from server.realtime.inbox import Inbox
from server.realtime.metrics import WS_CLOSED_BY_SERVER
from server.realtime.protocols import LegacyWSHandler, StrictWebSocketAdapter, TransportWSHandler

log = logging.getLogger(__name__)

# What a socket may have read but not yet handled; a client that outpaces the server by more than
# this is closed (1008) rather than buffered without bound.
MAX_WAITING_MESSAGES = 200
MAX_WAITING_BYTES = 1024 * 1024

# Every accepted-or-accepting WebSocket of this process: what a drain closes.
OPEN: set[GraphQLConsumer] = set()


class GraphQLConsumer(GraphQLWSConsumer):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = StrictWebSocketAdapter
    # get_channel_layer() returns None for an alias that is not configured: no per-socket channel.
    channel_layer_alias = "__no_layer_per_socket__"

    DISCONNECTED = object()  # what the inbox yields once the client has gone
    closing = False
    subprotocol: str | None = None
    connection: sockets.Connection | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = Inbox()  # text, None for a binary message, or DISCONNECTED
        if compat.on("lean_sockets"):
            strawberry_compat.drop_unused_queue(self)

    async def __call__(self, scope, receive, send) -> None:
        self.connection = scope.get(sockets.SCOPE_KEY) or sockets.Connection(send)
        OPEN.add(self)
        try:
            if compat.on("lean_consumer"):
                await channels_compat.read_socket(self, scope, receive, send)
            else:
                await super().__call__(scope, receive, send)
        finally:
            OPEN.discard(self)

    def decode_json(self, data):
        return json_input.loads(data)

    async def create_websocket_response(self, request, subprotocol):
        self.subprotocol = subprotocol
        return await super().create_websocket_response(request, subprotocol)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.run_task is not None and self.run_task.done():
            return  # the protocol handler has ended (it closed the socket): nothing will read this
        if self.closing:
            return  # it is being closed: what was read before the close is dropped
        count, size = self.connection.waiting()
        count += self.inbox.qsize()
        if count > MAX_WAITING_MESSAGES or size > MAX_WAITING_BYTES:
            await self.close(code=1008, reason="Too many messages waiting: slow down")
            return
        self.inbox.put_nowait(text_data if text_data else None)

    async def disconnect(self, code) -> None:
        self.inbox.put_nowait(self.DISCONNECTED)
        if self.run_task is not None:
            await self.run_task

    async def connect(self) -> None:
        from server.realtime import drain

        if drain.draining:  # a node that could not stop listening refuses new sockets (403)
            await self.close()
            return
        await super().connect()

    async def close(self, code=None, reason=None, *, quietly: bool = False) -> None:
        """Close with the reason too: Daphne turns a websocket.close message into a close frame
        without its reason (and refuses codes autobahn reserves, such as 1002), so once the socket
        is open the frame is written directly where the server allows (fast path close_reasons).
        Before accept, a close is a handshake refusal (403)."""
        if self.closing:
            return  # once is enough: more bad input may still be queued behind the first
        self.closing = True
        if code not in (None, True):
            WS_CLOSED_BY_SERVER.labels(code=str(code)).inc()
            if not quietly:
                log.info(
                    "closing a WebSocket from %s: %s %s", (self.scope.get("client") or ["?"])[0], code, reason or ""
                )
            if self.connection.close_with_reason(code, reason or ""):
                return
        try:
            await super().close(code=code, reason=reason)
        except Exception:  # Daphne's ASGI close refuses codes autobahn reserves (1002, 1008, 1012...)
            await super().close(code=1000, reason=reason)
