"""Sending to the channel layer from synchronous code (gunicorn workers, management commands).

`async_to_sync(layer.group_send)` runs a fresh event loop per call and so opens a new Redis
connection for every publish. Instead each process keeps one event loop in a daemon thread
with the layer's connection pool on it, and hands sends to that loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from channels.layers import get_channel_layer

from server.realtime import metrics

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="layer-publisher", daemon=True).start()
        return _loop


def group_send(group: str, message: dict[str, Any]) -> bool:
    """Send `message` to `group`; True on success. Never raises: the caller has committed already,
    and the event is in the database, where hubs find it on their next catch-up."""
    layer = get_channel_layer()
    try:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            # Called from async code (tests, ASGI): schedule on the caller's own loop.
            running.create_task(layer.group_send(group, message))
        else:
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _publisher_loop())
            future.result(timeout=SEND_TIMEOUT_SECONDS)
    except Exception:
        metrics.BROADCASTS.labels(outcome="failed").inc()
        log.exception("could not send to group %s; subscribers will catch up from the database", group)
        return False
    metrics.BROADCASTS.labels(outcome="sent").inc()
    return True
