"""The root ASGI application, as the Channels routing guide builds it.

HTTP goes to Django (health, metrics, GraphQL over HTTP if asked). WebSockets pass the Origin
check and the session/auth middleware before reaching strawberry's consumer, which speaks both
graphql-transport-ws and the legacy graphql-ws protocol. `/graphql` is accepted too, so GraphiQL,
served at /graphql, can subscribe on the same URL.
"""

import datetime
import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
# Populate the app registry before importing anything that imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from server import compat  # noqa: E402
from server.logs import RequestIdASGIMiddleware  # noqa: E402
from server.realtime.auth import SessionAuthMiddleware  # noqa: E402
from server.realtime.consumer import GraphQLConsumer  # noqa: E402
from server.realtime.health import LoopHealthz  # noqa: E402
from server.realtime.origin import AllowedHostsOriginValidator  # noqa: E402
from server.realtime.sockets import ConnectionMiddleware  # noqa: E402
from server.schema import ws_schema  # noqa: E402

graphql_over_websocket = GraphQLConsumer.as_asgi(
    schema=ws_schema,
    connection_init_wait_timeout=datetime.timedelta(seconds=settings.WS_CONNECTION_INIT_TIMEOUT),
    max_subscriptions_per_connection=settings.WS_MAX_SUBSCRIPTIONS,
)

application = ProtocolTypeRouter(
    {
        # /healthz is answered on the event loop: through Django it would queue for the one
        # thread every database_sync_to_async call shares, and a reconnect storm could then fail
        # liveness and restart a busy node.
        "http": LoopHealthz(django_asgi_app),
        # The connection's handles first: they must see the server's own `send`, which
        # Channels' session middleware wraps (server.realtime.sockets); then the request id for
        # the socket's logs.
        "websocket": ConnectionMiddleware(
            RequestIdASGIMiddleware(
                AllowedHostsOriginValidator(
                    SessionAuthMiddleware(URLRouter([re_path(r"^(ws)?graphql/?$", graphql_over_websocket)]))
                )
            ),
            send_buffer=settings.WS_SEND_BUFFER_BYTES,
        ),
    }
)

# Which fast paths this node uses, and why any is off: one line each, and a metric.
compat.report()

# A Daphne node holds thousands of long-lived objects per thousand sockets, while each delivery
# allocates hundreds of short-lived ones; with Python's default thresholds the collector keeps
# re-scanning the long-lived heap (docs/performance.md has the cost). Freeze
# what start-up loaded and collect young objects less often. POSTWIRE_WS_GC_THRESHOLDS tunes it.
if settings.WS_GC_THRESHOLDS:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.WS_GC_THRESHOLDS)
