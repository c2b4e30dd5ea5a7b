"""The api tier: the Django project against the session's real PostgreSQL and Redis."""

import asyncio

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings

from server.app.blog.notifications import get_hub

# Django's default hasher, PBKDF2 at 1,000,000 iterations, costs about a second of CPU for every
# create_user, login and check_password on this machine; cookiecutter-django's test settings
# use MD5 for the same reason. Only this tier's in-process code is affected: what the product
# hashes with is pinned by tests/api/authentication/test_password_hashing.py, and every process
# a test starts (gunicorn, Daphne, manage.py) keeps the product's settings.
FAST_PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = FAST_PASSWORD_HASHERS


@pytest.fixture(autouse=True)
def _fresh_hub():
    # The hub and the channel layers (their asyncio locks) belong to one event loop; each async
    # test has its own. A process in production has one loop, so this is a test-only concern.
    get_hub.cache_clear()
    channel_layers.backends.clear()
    yield
    get_hub.cache_clear()
    channel_layers.backends.clear()


class GroupListener:
    """A raw channel in the posts group: what the channel layer actually carried."""

    def __init__(self, layer, channel):
        self.layer, self.channel = layer, channel

    async def receive(self, timeout=5.0):
        return await asyncio.wait_for(self.layer.receive(self.channel), timeout)

    async def assert_silent(self, seconds=1.0):
        with pytest.raises(asyncio.TimeoutError):
            message = await self.receive(seconds)
            pytest.fail(f"expected no message, got {message}")


@pytest.fixture
async def group_listener():
    layer = get_channel_layer()
    channel = await layer.new_channel("test.")
    await layer.group_add(settings.POSTS_CHANNEL, channel)
    yield GroupListener(layer, channel)
    await layer.group_discard(settings.POSTS_CHANNEL, channel)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Worker threads (sync_to_async, the hub's queries) keep connections open; close them so the
    test database can be dropped."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
