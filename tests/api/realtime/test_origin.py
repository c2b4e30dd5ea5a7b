"""The WebSocket handshake checks Host (as Django does for HTTP) and Origin against ALLOWED_HOSTS."""

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator

from server.realtime.origin import AllowedHostsOriginValidator

# Channels' consumers (the refusing one too) call close_old_connections() on every message.
pytestmark = pytest.mark.django_db


class Accept(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()


async def handshake(headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(AllowedHostsOriginValidator(Accept.as_asgi()), "/wsgraphql", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected


@pytest.mark.parametrize(
    "headers, accepted",
    [
        ([(b"host", b"localhost:8080")], True),  # no Origin: a non-browser client, allowed
        ([(b"host", b"127.0.0.1")], True),
        ([(b"host", b"[::1]:8001")], True),
        ([(b"host", b"localhost:8080"), (b"origin", b"http://localhost:8080")], True),
        ([(b"host", b"evil.example")], False),  # unknown Host, without Origin: refused (was accepted)
        ([(b"host", b"evil.example:8080"), (b"origin", b"http://localhost:8080")], False),
        ([], False),  # no Host at all
        ([(b"host", b"localhost:8080"), (b"origin", b"http://evil.example")], False),  # cross-site
    ],
)
async def test_host_and_origin_must_be_allowed(headers, accepted, settings):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    assert await handshake(headers) is accepted


async def test_forwarded_host_is_read_only_when_django_is_told_to(settings):
    settings.ALLOWED_HOSTS = ["blog.example"]
    forwarded = [(b"host", b"nginx:8080"), (b"x-forwarded-host", b"blog.example")]
    assert await handshake(forwarded) is False
    settings.USE_X_FORWARDED_HOST = True
    assert await handshake(forwarded) is True
