"""Graceful drain of a Daphne node on SIGTERM (a rolling update, a scale-down, `docker stop`).

Daphne's own SIGTERM handling stops the reactor and cancels every application at once: all of a
node's clients see 1006 together and reconnect in one storm. Instead, the node

1. stops listening, so new connections go to other nodes (a proxy's connect is refused and
   retried elsewhere) while the sockets it holds keep receiving (fast path `stop_listening`;
   without it, new handshakes are refused with 403);
2. closes its sockets with 1012 (service restart) and a reason telling the client to reconnect and
   resume with `after`, shuffled, in batches every BATCH_SECONDS at no less than
   `WS_DRAIN_RATE` sockets per second and within `WS_DRAIN_SECONDS`, so reconnects spread out;
3. stops its hubs, which leave the channel-layer group (publishes stop writing to it at once,
   not after group_expiry);
4. stops the reactor: Daphne cancels whatever is left and the process exits 0.

Nothing is lost: a client resumes with the last seq it saw and the new node replays the gap from
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import signal

from django.conf import settings

from server import compat
from server.compat import twisted
from server.realtime import consumer, hub

log = logging.getLogger(__name__)

CLOSE_CODE = 1012  # "Service Restart" (RFC 6455 registry): clients reconnect
REASON = "Server restarting: reconnect and resume with after=<last seq>"
BATCH_SECONDS = 0.1
CLOSE_HANDSHAKE_WAIT = 3.0  # for clients to answer the close frames of the last batch

draining = False


def install() -> None:
    """Take SIGTERM over from Twisted (call once the reactor runs: Twisted installs its handlers
    on startup). The handler only schedules the drain on the reactor's loop."""

    def on_sigterm(signum, frame):
        twisted.call_from_thread(_start)

    signal.signal(signal.SIGTERM, on_sigterm)


def _start() -> None:
    global draining
    if draining:
        return
    draining = True
    asyncio.get_event_loop().create_task(drain_and_stop(), name="drain")


async def drain_and_stop() -> None:
    try:
        await drain(settings.WS_DRAIN_SECONDS, settings.WS_DRAIN_RATE)
    except Exception:
        log.exception("drain failed; stopping anyway")
    twisted.stop_reactor()


async def drain(window: float, min_rate: float) -> None:
    started = asyncio.get_running_loop().time()
    if compat.on("stop_listening"):
        twisted.stop_listening()
    sockets = list(consumer.OPEN)
    random.shuffle(sockets)
    rate = max(min_rate, len(sockets) / max(window, BATCH_SECONDS))
    per_batch = max(1, math.ceil(rate * BATCH_SECONDS))
    log.info("draining: closing %d WebSockets at %.0f/s", len(sockets), rate)
    for start in range(0, len(sockets), per_batch):
        for socket in sockets[start : start + per_batch]:
            if not socket.closing:
                await socket.close(CLOSE_CODE, REASON, quietly=True)
        if start + per_batch < len(sockets):
            await asyncio.sleep(BATCH_SECONDS * random.uniform(0.5, 1.5))
    deadline = asyncio.get_running_loop().time() + CLOSE_HANDSHAKE_WAIT
    while consumer.OPEN and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    for running in list(hub.RUNNING):
        await running.stop()
    log.info(
        "drained in %.1fs (%d sockets still open, cut)", asyncio.get_running_loop().time() - started, len(consumer.OPEN)
    )
