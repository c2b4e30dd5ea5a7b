"""The WebSocket consumer: strawberry's, minus a channel-layer channel per socket in hub mode,
with protocol handlers that tell each operation its own address (server.realtime.protocols).

A Channels consumer normally opens its own layer channel and keeps a `receive()` on it for its
whole life. With the per-process hub, sockets never receive from the layer, so that channel is
pure cost: one more Redis reader per socket, and a Redis outage would raise in every socket's
receive and close every WebSocket. Without it, only the hub talks to Redis and sockets stay
open through a Redis restart. The tutorial's per-socket mode (benchmark only) keeps the layer.
"""

from django.conf import settings
from strawberry.channels import GraphQLWSConsumer

from server.realtime.protocols import LegacyWSHandler, TransportWSHandler


class GraphQLConsumer(GraphQLWSConsumer):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    # get_channel_layer() returns None for an unknown alias: no per-socket channel.
    channel_layer_alias = "default" if settings.FANOUT_MODE == "per-socket" else "__no_layer_per_socket__"
