"""The WebSocket consumer: strawberry's, minus a channel-layer channel per socket in hub mode,
with protocol handlers that tell each operation its own address (server.realtime.protocols).

A Channels consumer normally opens its own layer channel and keeps a `receive()` on it for its
whole life. With the per-process hub, sockets never receive from the layer, so that channel is
pure cost: one more Redis reader per socket, and a Redis outage would raise in every socket's
receive and close every WebSocket. Without it, only the hub talks to Redis and sockets stay
open through a Redis restart. The per-socket mode (benchmark only: the design of the Strawberry + Channels
tutorial postwire started from) keeps the layer.
"""

import asyncio
import logging

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from strawberry.channels import GraphQLWSConsumer

from server import json_input
from server.realtime.inbox import Inbox
from server.realtime.metrics import WS_CLOSED_BY_SERVER
from server.realtime.protocols import LegacyWSHandler, TransportWSHandler
from server.realtime.wire import wire_of

log = logging.getLogger(__name__)

# What a socket may have read but not yet handled; a client that outpaces the server by more than
# this is closed (1008) rather than buffered without bound.
MAX_WAITING_MESSAGES = 200
MAX_WAITING_BYTES = 1024 * 1024


class GraphQLConsumer(GraphQLWSConsumer):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    # get_channel_layer() returns None for an unknown alias: no per-socket channel.
    channel_layer_alias = "default" if settings.FANOUT_MODE == "per-socket" else "__no_layer_per_socket__"

    closing = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.message_queue = Inbox()

    async def __call__(self, scope, receive, send) -> None:
        """Channels' AsyncConsumer.__call__, reading the socket in a plain loop when there is no
        layer channel to read as well. Channels' await_many_dispatch wraps every `receive()` in a
        task and an asyncio.wait (a task, a future and their callbacks per inbound message, and a
        task held by every idle socket); with one source there is nothing to wait on together."""
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            await super().__call__(scope, receive, send)  # per-socket mode reads its layer channel too
            return
        self.scope = scope
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
                # Let the protocol handler run between messages, as Channels' loop does: moving a
                # burst into strawberry's queue in one go would starve it, and the flood limit
                # (what waits in both queues) would be reached by a client that is only quick.
                await asyncio.sleep(0)
        except StopConsumer:
            pass

    def decode_json(self, data):
        return json_input.loads(data)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.run_task is not None and self.run_task.done():
            return  # the protocol handler has ended (it closed the socket): nothing will read this
        if self.closing:
            return  # it is being closed: what was read before the close is dropped
        wire = wire_of(self.scope)
        count, size = wire.waiting() if wire is not None else (0, 0)
        count += self.message_queue.qsize()
        if count > MAX_WAITING_MESSAGES or size > MAX_WAITING_BYTES:
            await self.close(code=1008, reason="Too many messages waiting: slow down")
            return
        await super().receive(text_data=text_data, bytes_data=bytes_data)

    async def close(self, code=None, reason=None) -> None:
        """Close with the reason too: Daphne turns a websocket.close message into a close frame
        without its reason (and refuses codes autobahn reserves, such as 1002), so once the socket
        is open the frame is written directly. Before accept, a close is a handshake refusal (403)."""
        if self.closing:
            return  # once is enough: more bad input may still be queued behind the first
        self.closing = True
        if code not in (None, True):
            WS_CLOSED_BY_SERVER.labels(code=str(code)).inc()
            log.info("closing a WebSocket from %s: %s %s", (self.scope.get("client") or ["?"])[0], code, reason or "")
        wire = wire_of(self.scope)
        if wire is not None and wire.is_open and code not in (None, True):
            wire.close(code, reason or "")
            return
        await super().close(code=code, reason=reason)

    async def dispatch(self, message) -> None:
        """Channels' dispatch, minus `close_old_connections()` before every message.

        That call hops to Daphne's one thread for synchronous code on every inbound message
        (connection_init, subscribe, complete...), so a reconnect storm queues behind it. This
        consumer reaches the database only through `database_sync_to_async`, which closes stale
        connections itself, around each query, on that same thread."""
        kind = message.get("type", "")
        if kind.startswith(("http.", "websocket.")):
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {kind}")
            await handler(message)
        else:  # a channel-layer message for listen_to_channel (per-socket mode)
            await super().dispatch(message)
