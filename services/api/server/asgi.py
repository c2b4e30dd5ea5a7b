"""The root ASGI application, as the Channels routing guide builds it.

HTTP goes to Django (health, metrics, GraphQL over HTTP if asked). WebSockets pass the Origin
check and the session/auth middleware before reaching strawberry's consumer, which speaks both
graphql-transport-ws and the legacy graphql-ws protocol. `/graphql` is accepted too, so GraphiQL,
served at /graphql, can subscribe on the same URL.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
# Populate the app registry before importing anything that imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from server.realtime.consumer import GraphQLConsumer  # noqa: E402
from server.realtime.origin import AllowedHostsOriginValidator  # noqa: E402
from server.schema import ws_schema  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter([re_path(r"^(ws)?graphql/?$", GraphQLConsumer.as_asgi(schema=ws_schema))])
            )
        ),
    }
)
