"""A Daphne node's liveness is answered on its event loop, not behind the sync thread."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator

from server.realtime import drain


@pytest.fixture
def application():
    from server.asgi import application

    return application


async def test_healthz_answers_while_the_sync_thread_is_busy(application):
    """database_sync_to_async calls all share one thread; a reconnect storm can keep it busy for
    seconds. Liveness must not queue behind it, or a busy node gets restarted."""
    release = threading.Event()
    busy = asyncio.create_task(sync_to_async(release.wait, thread_sensitive=True)(30))
    try:
        await asyncio.sleep(0.1)
        response = await HttpCommunicator(application, "GET", "/healthz").get_response(timeout=5)
        assert not busy.done()  # answered while the thread was still held
        assert (response["status"], response["body"]) == (200, b"ok\n")
    finally:
        release.set()
        await busy


async def test_healthz_says_when_the_node_is_draining(application, monkeypatch):
    monkeypatch.setattr(drain, "draining", True)
    response = await HttpCommunicator(application, "GET", "/healthz").get_response()
    assert (response["status"], response["body"]) == (200, b"draining\n")


@pytest.mark.django_db(transaction=True)
async def test_other_paths_still_reach_django(application):
    response = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=10)
    assert response["status"] == 200 and b'"ready": true' in response["body"]
