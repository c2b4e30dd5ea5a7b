"""WebSocket Host and Origin checks against ALLOWED_HOSTS; Origin-less clients are let through.

Channels' AllowedHostsOriginValidator refuses a handshake without an Origin header. Browsers
always send one, so the check still stops cross-site WebSocket hijacking; a missing Origin means
a non-browser client (graphql-ws on Node, gql, the load tester), which carries no ambient
cookies of a victim. POSTWIRE_WS_REQUIRE_ORIGIN=true restores the strict behaviour.

The Host header is checked too, as Django checks it for HTTP: Channels never looks at it, so
without Origin any Host was accepted. A handshake for a host not served is refused with 403.
"""

from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


class Denier(WebsocketDenier):
    """Refuses the handshake (403) without a channel-layer channel: Channels' denier opens one,
    so every refused socket would hold a Redis read for up to 5 s (a cheap way to load Redis)."""

    channel_layer_alias = "__no_layer_for_refusals__"  # get_channel_layer() gives None


def _origin(scope):
    """The handshake's Origin, parsed as Channels' OriginValidator parses it (None if absent)."""
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                return urlparse(value.decode("latin1"))
            except UnicodeDecodeError:
                return None
    return None


def allowed_hosts() -> list[str]:
    """ALLOWED_HOSTS, or under DEBUG with none set the local names (as Channels' validator does)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts


class HostAndOriginCheck:
    """Refuses a WebSocket handshake whose Host is not served or whose Origin is foreign
    (Channels' own pattern matching for Origin, Django's for Host)."""

    def __init__(self, application) -> None:
        self.application = application
        self.hosts = allowed_hosts()
        self.origins = OriginValidator(application, self.hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not (self.valid_host(scope) and self.valid_origin(_origin(scope))):
            return await Denier()(scope, receive, send)
        return await self.application(scope, receive, send)

    def valid_host(self, scope) -> bool:
        headers = dict(scope.get("headers", []))
        host = headers.get(b"host", b"")
        if settings.USE_X_FORWARDED_HOST and b"x-forwarded-host" in headers:
            host = headers[b"x-forwarded-host"]  # as Django's HttpRequest.get_host() reads it
        domain, _port = split_domain_port(host.decode("latin1"))
        return bool(domain) and validate_host(domain, self.hosts)

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return not settings.WS_REQUIRE_ORIGIN
        return self.origins.valid_origin(parsed_origin)


AllowedHostsOriginValidator = HostAndOriginCheck  # the name the Channels routing guide uses
