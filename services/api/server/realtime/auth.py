"""Who is on a WebSocket: channels' AuthMiddlewareStack, without its thread hops for a socket
that carries no session cookie.

The stack loads the session and then the user through `database_sync_to_async`, two hops to
Daphne's single thread for synchronous code, for every handshake, even when there is nothing
to load. Subscribers without a login (most of them) get an empty session and AnonymousUser
inline; a socket with a session cookie goes through the stack as before.
"""

from __future__ import annotations

from importlib import import_module

from channels.auth import AuthMiddlewareStack
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie


class SessionAuthMiddleware:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope, receive, send):
        cookies = {}
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        if cookies.get(settings.SESSION_COOKIE_NAME):
            return await self.with_session(scope, receive, send)
        # What the stack would have produced for a cookie-less handshake, without the hops; in
        # place (the scope is this connection's own), so idle sockets do not each hold a copy.
        scope.update(cookies=cookies, session=self.session_store(None), user=AnonymousUser())
        return await self.inner(scope, receive, send)
