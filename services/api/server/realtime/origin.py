"""WebSocket Origin check against ALLOWED_HOSTS, which lets Origin-less clients through.

Channels' AllowedHostsOriginValidator refuses a handshake without an Origin header. Browsers
always send one, so the check still stops cross-site WebSocket hijacking; a missing Origin means
a non-browser client (graphql-ws on Node, gql, the load tester), which carries no ambient
cookies of a victim. POSTWIRE_WS_REQUIRE_ORIGIN=true restores the strict behaviour.
"""

from channels.security.websocket import AllowedHostsOriginValidator as _Strict
from channels.security.websocket import OriginValidator
from django.conf import settings


class _OriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return not settings.WS_REQUIRE_ORIGIN
        return super().valid_origin(parsed_origin)


def AllowedHostsOriginValidator(application):  # noqa: N802 - mirrors the Channels factory's name
    strict = _Strict(application)
    return _OriginValidator(application, strict.allowed_origins)
