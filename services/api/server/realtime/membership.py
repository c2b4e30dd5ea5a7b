"""This process's one member of the channel-layer group: every event, once, in order.

If every WebSocket joined the group itself, each publish would cost the layer O(subscribers)
Redis work (channels_redis reads every group member). Here each process joins once, so a
publish costs O(processes), and hands each event to `deliver` (the local fan-out).

The membership is kept alive:
- re-joined every `rejoin_seconds`, well inside the layer's `group_expiry`, after which
  channels_redis silently drops members;
- checked every `check_seconds` by sending the group a probe and waiting for it to come back.
  A restarted (or flushed, or failed-over) Redis has forgotten every group while redis-py
  reconnects quietly and the blocking receive just keeps waiting; a probe that does not return
  means re-join, then ask the database for everything after the last seq delivered (the gap);
- a lost connection (`receive()` raises) is retried with back-off, then re-joined and caught up;
- a live event whose seq skips ahead makes it read the hole from PostgreSQL first, and a
  periodic catch-up recovers a broadcast lost on the publishing side.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer

from server.realtime import metrics
from server.realtime.fanout import Event, EventsAfter, EventsNotRetained, stored_after

log = logging.getLogger("server.realtime.hub")

PROBE = "postwire.hub.probe"  # the message type of a membership probe (never an event)
RECENT_SEQS = 10_000  # seqs remembered to deliver each once: a seq can arrive live and from a catch-up


class GroupMembership:
    def __init__(
        self,
        *,
        group: str,
        decode: Callable[[dict[str, Any]], Event],
        latest_seq: Callable[[], Awaitable[int]],
        events_after: EventsAfter,
        deliver: Callable[[Event], Awaitable[None]],
        rejoin_seconds: float,
        catchup_seconds: float,
        check_seconds: float = 5.0,
        layer_alias: str = "default",
    ) -> None:
        self.group = group
        self._decode = decode
        self._latest_seq = latest_seq
        self._events_after = events_after
        self._deliver = deliver
        self._rejoin_seconds = rejoin_seconds
        self._catchup_seconds = catchup_seconds
        self._check_seconds = check_seconds
        self._layer_alias = layer_alias
        self._task: asyncio.Task | None = None
        self._stop_requested: asyncio.Event | None = None  # one per run of the task
        self._delivery_lock = asyncio.Lock()
        self._catchup_lock = asyncio.Lock()
        self._high_seq: int | None = None  # highest seq delivered
        self._recent: collections.OrderedDict[int, None] = collections.OrderedDict()
        # Set once _high_seq is known (the first session read it): a replay must not start
        # before, or an event committed between the replay's query and that read would be
        # neither replayed nor delivered (a fresh node, in a rolling restart).
        self.start_known = asyncio.Event()
        self.connected = asyncio.Event()
        self.channel_name: str | None = None
        self._probes = itertools.count()
        self._probe_waiting: tuple[int, asyncio.Event] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._stop_requested = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._stop_requested), name=f"hub:{self.group}"
            )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and leave the group, within `timeout`.

        One cancel() is not always enough: redis-py's read path (asyncio.timeout around a
        blocking pop) can swallow a cancellation that lands as the read completes, and the task
        carries on. So its loops also check a stop flag, and the cancel is repeated until the
        task has ended."""
        task, self._task = self._task, None
        self.connected.clear()
        if task is None:
            return
        self._stop_requested.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not task.done():
            if loop.time() >= deadline:
                log.error("hub %s did not stop within %.1fs", self.group, timeout)
                return
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        await self._leave(max(0.5, deadline - loop.time()))

    async def _leave(self, timeout: float) -> None:
        """Leave the group, so publishes stop writing to a member nobody reads (channels_redis
        would keep it until group_expiry). Best effort: with Redis away, expiry does it later."""
        if self.channel_name is None:
            return
        try:
            layer = get_channel_layer(self._layer_alias)
            await asyncio.wait_for(layer.group_discard(self.group, self.channel_name), timeout)
            log.info("hub %s left as %s", self.group, self.channel_name)
        except Exception as exc:
            log.warning(
                "hub %s could not leave the group (%s: %s); it expires after group_expiry",
                self.group,
                type(exc).__name__,
                exc,
            )

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost Redis connection, a failed query: retry them all
                self.connected.clear()
                if stop.is_set():
                    return
                metrics.HUB_RECONNECTS.inc()
                delay = backoff * (1 + random.random() / 2)
                log.warning(
                    "hub %s lost the channel layer (%s: %s); retrying in %.1fs",
                    self.group,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5

    async def _session(self, stop: asyncio.Event) -> None:
        layer = get_channel_layer(self._layer_alias)
        if self._high_seq is None:
            self._high_seq = await self._latest_seq()
        self.start_known.set()
        # The default "specific." prefix matters: channels_redis has one receive lock per layer
        # and its holder only reads its own prefix's queue, so a hub on another prefix would
        # starve behind this process's WebSocket consumers.
        self.channel_name = await layer.new_channel()
        await layer.group_add(self.group, self.channel_name)
        log.info("hub %s joined as %s at seq %s", self.group, self.channel_name, self._high_seq)
        await self.catch_up()  # whatever was published while we were away
        self.connected.set()
        keeper = asyncio.create_task(self._keep_membership(layer, self.channel_name, stop))
        try:
            while not stop.is_set():
                message = await layer.receive(self.channel_name)
                if message.get("type") == PROBE:
                    self._probe_returned(message)
                    continue
                received = time.perf_counter()
                metrics.HUB_MESSAGES.inc()
                event = self._decode(message)
                if self._high_seq is not None and event.seq > self._high_seq + 1:
                    # A gap: something was lost on the way, rolled back, or is still committing.
                    # Deliver what the database already has first, so order holds; a seq that
                    # commits later still goes out when its own message arrives.
                    await self.catch_up()
                await self._hand_over(event)
                metrics.DELIVERY_SECONDS.observe(time.perf_counter() - received)
        finally:
            keeper.cancel()

    async def _hand_over(self, event: Event) -> None:
        """Deliver each seq once, in the order events arrive (one event at a time)."""
        async with self._delivery_lock:
            if event.seq in self._recent:
                metrics.HUB_DUPLICATES.inc()
                return
            self._recent[event.seq] = None
            if len(self._recent) > RECENT_SEQS:
                self._recent.popitem(last=False)
            if self._high_seq is None or event.seq > self._high_seq:
                self._high_seq = event.seq
            await self._deliver(event)

    async def _keep_membership(self, layer, channel_name: str, stop: asyncio.Event) -> None:
        """Re-join before group_expiry drops us, re-join at once if Redis forgot us, catch up."""
        since_rejoin = since_catchup = 0.0
        while not stop.is_set():
            await asyncio.sleep(self._check_seconds)
            since_rejoin += self._check_seconds
            since_catchup += self._check_seconds
            try:
                lost = not await self._probe(layer, channel_name)
                if lost:
                    log.warning(
                        "hub %s: membership gone from the channel layer (restart or flush); re-joining", self.group
                    )
                if lost or since_rejoin >= self._rejoin_seconds:
                    await layer.group_add(self.group, channel_name)
                    metrics.HUB_REJOINS.inc()
                    since_rejoin = 0.0
                if lost or since_catchup >= self._catchup_seconds:
                    await self.catch_up()
                    since_catchup = 0.0
            except Exception as exc:  # the receive loop sees the same outage and reconnects
                log.warning("hub %s maintenance failed: %s: %s", self.group, type(exc).__name__, exc)

    async def _probe(self, layer, channel_name: str) -> bool:
        """Send the group a probe naming this member; True if it comes back on our channel."""
        number = next(self._probes)
        returned = asyncio.Event()
        self._probe_waiting = (number, returned)
        try:
            await layer.group_send(self.group, {"type": PROBE, "member": channel_name, "n": number})
            await asyncio.wait_for(returned.wait(), min(self._check_seconds, 2.0))
            return True
        except TimeoutError:
            return False
        finally:
            self._probe_waiting = None

    def _probe_returned(self, message: dict) -> None:
        waiting = self._probe_waiting
        if waiting is not None and message.get("member") == self.channel_name and message.get("n") == waiting[0]:
            waiting[1].set()

    async def catch_up(self) -> None:
        """Deliver every stored event after the last seq delivered."""
        async with self._catchup_lock:
            if self._high_seq is None:
                return
            after = self._high_seq
            while True:
                try:
                    async for event in stored_after(self._events_after, after, None):
                        if event.seq not in self._recent:
                            metrics.HUB_CAUGHT_UP.inc()
                        await self._hand_over(event)
                    return
                except EventsNotRetained as gone:
                    # Away for longer than the retention: nobody can deliver what was pruned, and
                    # raising would only make _run reconnect and hit it again. Deliver what is
                    # still stored.
                    log.warning(
                        "hub %s: events after seq %s were pruned before it caught up (oldest "
                        "kept: %s); its subscribers miss them",
                        self.group,
                        gone.after,
                        gone.oldest,
                    )
                    after = gone.oldest - 1
