"""The tutorial's ASGI application: Django for HTTP, strawberry's stock consumer (with a
channel-layer channel per socket) behind AuthMiddlewareStack for WebSockets. Run by plain Daphne:

    PYTHONPATH=.:services/api DJANGO_SETTINGS_MODULE=server.settings \\
        python -m daphne -p 8001 bench.tutorial.asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402
from strawberry.channels import GraphQLWSConsumer  # noqa: E402

from bench.tutorial.schema import schema  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter([re_path(r"^(ws)?graphql/?$", GraphQLWSConsumer.as_asgi(schema=schema))])
        ),
    }
)
