"""Fixtures of the realtime tests: the real ASGI application, this process's hub, a publisher."""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from server.app.blog.notifications import get_hub
from tests.api.realtime.test_consumer import HOST, make_user


@pytest.fixture
def application():
    from server.asgi import application

    assert HOST in settings.ALLOWED_HOSTS, "the handshakes below use Host: localhost"
    return application


@pytest.fixture
async def hub():
    """This process's hub; stopped after the test (it lives on the test's event loop)."""
    yield get_hub()
    await get_hub().stop()


@pytest.fixture
async def publisher():
    return await sync_to_async(make_user)("publisher", staff=True, publisher=True)
