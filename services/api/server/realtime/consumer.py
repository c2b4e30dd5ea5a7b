"""The WebSocket consumer: strawberry's, minus a channel-layer channel per socket in hub mode,
with protocol handlers that tell each operation its own address (server.realtime.protocols).

A Channels consumer normally opens its own layer channel and keeps a `receive()` on it for its
whole life. With the per-process hub, sockets never receive from the layer, so that channel is
pure cost: one more Redis reader per socket, and a Redis outage would raise in every socket's
receive and close every WebSocket. Without it, only the hub talks to Redis and sockets stay
open through a Redis restart. The tutorial's per-socket mode (benchmark only) keeps the layer.
"""

from channels.consumer import get_handler_name
from django.conf import settings
from strawberry.channels import GraphQLWSConsumer

from server.realtime.protocols import LegacyWSHandler, TransportWSHandler


class GraphQLConsumer(GraphQLWSConsumer):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    # get_channel_layer() returns None for an unknown alias: no per-socket channel.
    channel_layer_alias = "default" if settings.FANOUT_MODE == "per-socket" else "__no_layer_per_socket__"

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
