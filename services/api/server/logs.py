"""Log records that say where they come from: the node, the request or WebSocket connection, and
the GraphQL operation on that socket.

nginx gives every request an id (X-Request-ID, also sent back to the client); the middlewares
here keep it in a context variable for the request's (or the socket's) duration. A WebSocket
operation's task also carries the client's operation id (set by server.realtime.protocols). A
logging filter puts both and the node name on every record, for the plain or JSON (LOG_FORMAT)
formatter.
"""

import contextvars

from django.conf import settings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
operation_id: contextvars.ContextVar[str] = contextvars.ContextVar("operation_id", default="-")


class ContextFilter:
    """Adds `node`, `request_id` and `operation_id` to every record (a logging filter; never drops one)."""

    def filter(self, record) -> bool:
        record.node = settings.NODE_NAME
        record.request_id = request_id.get()
        record.operation_id = operation_id.get()
        return True


class RequestIdMiddleware:
    """Django (WSGI): the request's id, for the logs written while serving it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = request_id.set(request.headers.get("X-Request-ID", "-")[:64])
        try:
            return self.get_response(request)
        finally:
            request_id.reset(token)


class RequestIdASGIMiddleware:
    """ASGI (Daphne): the upgrade request's id for everything a WebSocket's tasks log."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        value = next((v.decode("latin-1")[:64] for k, v in scope.get("headers", ()) if k == b"x-request-id"), "-")
        token = request_id.set(value)
        try:
            return await self.inner(scope, receive, send)
        finally:
            request_id.reset(token)
