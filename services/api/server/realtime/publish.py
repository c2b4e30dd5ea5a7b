"""Sending to the channel layer from synchronous code (gunicorn workers, management commands).

`async_to_sync(layer.group_send)` runs a fresh event loop per call and so opens a new Redis
connection for every publish. Instead each process keeps one event loop in a daemon thread
with the layer's connection pool on it, and hands sends to that loop.

The request does not wait for the send: the event is committed in PostgreSQL before the send is
scheduled, and a send that fails is caught up from there (a hub notices the gap at the next
event, and catches up periodically), so waiting would only add Redis's round trip and a thread
hand-off to every publish's response. In an HTTP request the send is not even scheduled until
the response has been written (notifications.broadcast_on_commit, realtime/after_response.py).
Sends leave in the order they were scheduled (one loop); `flush()` waits for what is still in
flight when a worker exits.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import time
from typing import Any

from channels.layers import get_channel_layer

from server.realtime import metrics

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_in_flight: set[concurrent.futures.Future] = set()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="layer-publisher", daemon=True).start()
        return _loop


def _sent(group: str, scheduled: float, future: concurrent.futures.Future) -> None:
    _in_flight.discard(future)
    exc = None if future.cancelled() else future.exception()
    if future.cancelled() or exc is not None:
        metrics.BROADCASTS.labels(outcome="failed").inc()
        log.error(
            "could not send to group %s (%s); subscribers will catch up from the database",
            group,
            "cancelled" if exc is None else f"{type(exc).__name__}: {exc}",
        )
    else:
        metrics.BROADCASTS.labels(outcome="sent").inc()
        metrics.BROADCAST_SECONDS.observe(time.perf_counter() - scheduled)


async def _send(layer, group: str, message: dict[str, Any]) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        await layer.group_send(group, message)


def group_send(group: str, message: dict[str, Any]) -> None:
    """Schedule sending `message` to `group` and return at once. Never raises: the caller has
    committed already, and the event is in the database, where hubs find it if this send fails.

    Called from synchronous code only (a transaction's on_commit, or a request's end after one:
    Django refuses ORM writes in a thread running an event loop), so the send always goes to the
    publisher loop."""
    scheduled = time.perf_counter()
    try:
        layer = get_channel_layer()
        future = asyncio.run_coroutine_threadsafe(_send(layer, group, message), _publisher_loop())
    except Exception:
        metrics.BROADCASTS.labels(outcome="failed").inc()
        log.exception("could not send to group %s; subscribers will catch up from the database", group)
        return
    _in_flight.add(future)
    future.add_done_callback(lambda f: _sent(group, scheduled, f))


def flush(timeout: float = SEND_TIMEOUT_SECONDS) -> None:
    """Wait (from synchronous code) for the sends still in flight: a worker that exits would
    otherwise drop them (they would still arrive, later, through the hubs' catch-up)."""
    pending = list(_in_flight)
    if pending:
        concurrent.futures.wait(pending, timeout=timeout)


atexit.register(flush)
