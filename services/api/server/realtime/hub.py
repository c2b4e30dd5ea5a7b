"""The per-process hub: one channel-layer group member per Daphne process, fanning out in memory.

If every WebSocket joined the group itself, each publish would cost the layer O(subscribers)
Redis work (channels_redis reads every group member). Here each process joins once, so a publish
costs O(processes), and local delivery involves no database query.

Two ways to deliver locally:
- direct (the default under Daphne): subscribers are grouped by shape (server.realtime.shared);
  each event is executed once per shape and the hub writes every subscriber's pre-built frame
  to its socket in one synchronous pass (server.realtime.wire), in slices that let the event
  loop breathe. A subscriber whose socket holds too many unsent bytes is cut off and told to
  resubscribe with `after`.
- plain: one queue per subscriber, drained by strawberry, which executes and sends per
  subscriber (other ASGI servers, POSTWIRE_FANOUT=hub, and every replay of `after`).

The hub also keeps its membership alive:
- re-joins every `rejoin_seconds`, well inside the layer's `group_expiry`, after which
  channels_redis silently drops members;
- checks every `check_seconds` that its membership still exists in Redis. A restarted (or
  flushed, or failed-over) Redis has forgotten every group, while redis-py reconnects quietly
  and the blocking receive just keeps waiting; so the hub looks, re-joins, and asks the
  database for everything after the last sequence number it delivered (the gap);
- survives a lost connection: `receive()` raises, the hub backs off, reconnects, re-joins and
  catches up the same way;
- catches up periodically as well, so a broadcast lost on the publishing side still arrives.
Subscriber WebSockets stay open through all of this.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.layers import get_channel_layer

from server.realtime import metrics

log = logging.getLogger(__name__)


class Event(Protocol):
    seq: int
    kind: str


class SubscriberTooSlow(Exception):
    """The subscriber fell behind; it should resubscribe with `after` set to its last seq."""

    def __init__(self, behind: str, last: int | None) -> None:
        resume = f"after={last}" if last is not None else "after set to the last seq you received"
        super().__init__(f"subscriber {behind}; resubscribe with {resume}")


class EventsNotRetained(Exception):
    """Some event after `after` has been pruned (manage.py prune_events): a resume from there
    cannot be exact, so it is refused rather than silently skipping what is gone."""

    def __init__(self, after: int, oldest: int) -> None:
        self.after, self.oldest = after, oldest
        super().__init__(
            f"Events after seq {after} are no longer retained (oldest kept: {oldest}): "
            "refetch the posts, then subscribe without after"
        )


class DirectTarget(Protocol):
    """Where and how the hub writes one subscriber's frames (built by server.realtime.shared)."""

    key: Any  # subscribers with equal keys share one execution per event
    wire: Any  # .write(frame, max_unsent) -> 1 written, 0 closed, -1 too many unsent bytes
    protocol: str
    encoded_id: bytes

    def make_shape(self, kinds: frozenset[str]) -> Any: ...  # .render(event), .kinds, .subscribers, .delivered


@dataclass(eq=False)
class _Subscriber:
    kinds: frozenset[str]
    queue: asyncio.Queue = field(repr=False)
    overflowed: bool = False


@dataclass(eq=False, slots=True)
class _Direct:
    """A subscriber whose frames the hub writes. Until `live`, events wait in `backlog` while its
    resolver replays what it missed through strawberry (so frames stay in seq order)."""

    target: DirectTarget
    shape: Any
    task: asyncio.Task | None
    done: asyncio.Future
    after: int | None
    backlog: collections.deque = field(default_factory=collections.deque)
    replayed: set[int] = field(default_factory=set)
    live: bool = False
    ended: bool = False
    last_seq: int | None = None


RUNNING: set[Hub] = set()  # hubs of this process with a live task: what a drain stops


class Hub:
    REPLAY_PAGE = 1000  # events per database read when replaying `after` or catching up

    def __init__(
        self,
        *,
        group: str,
        decode: Callable[[dict[str, Any]], Event],
        latest_seq: Callable[[], Awaitable[int]],
        events_after: Callable[[int, Iterable[str] | None, int], Awaitable[list[Event]]],
        rejoin_seconds: float,
        catchup_seconds: float,
        queue_size: int,
        check_seconds: float = 5.0,
        layer_alias: str = "default",
        max_unsent_bytes: int = 512 * 1024,
        write_slice: int = 1000,
    ) -> None:
        self.group = group
        self._decode = decode
        self._latest_seq = latest_seq
        self._events_after = events_after
        self._rejoin_seconds = rejoin_seconds
        self._catchup_seconds = catchup_seconds
        self._queue_size = queue_size
        self._check_seconds = check_seconds
        self._layer_alias = layer_alias
        self._max_unsent_bytes = max_unsent_bytes
        self._write_slice = write_slice
        self._subscribers: set[_Subscriber] = set()
        self._shapes: dict[Any, Any] = {}
        self._delivery_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._stop_requested: asyncio.Event | None = None  # one per run of the task
        self._catchup_lock = asyncio.Lock()
        # Highest seq delivered, plus a window of recent seqs: a seq can arrive live and again
        # from a catch-up query; subscribers must see it once.
        self._high_seq: int | None = None
        # Set once _high_seq is known (the hub's first session read it): a replay must not start
        # before, or an event committed between the replay's query and that read would be
        # neither replayed nor delivered (a fresh node, in a rolling restart).
        self._start_known = asyncio.Event()
        self._recent: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.connected = asyncio.Event()
        self.channel_name: str | None = None

    # --- subscriber side -------------------------------------------------------------------

    def stream(
        self, kinds: Iterable[str], after: int | None = None, target: DirectTarget | None = None
    ) -> AsyncIterator[Event]:
        """Events of `kinds` for one subscriber; with `after`, first what was stored after that seq.

        With a `target`, the stream yields only what must go through strawberry (the replay);
        once live, the hub writes this subscriber's frames itself and the stream just waits,
        raising SubscriberTooSlow if the hub had to cut it off."""
        if target is None:
            return self._queued_stream(frozenset(kinds), after)
        return self._direct_stream(frozenset(kinds), after, target)

    async def _queued_stream(self, kinds: frozenset[str], after: int | None) -> AsyncIterator[Event]:
        subscriber = _Subscriber(kinds=kinds, queue=asyncio.Queue(self._queue_size))
        self._subscribers.add(subscriber)
        metrics.LIVE_SUBSCRIPTIONS.inc()
        try:
            self._ensure_running()
            if after is not None:
                await self._start_known.wait()
            # Live events can arrive out of seq order (two publishes committing in the other
            # order), so live delivery is never filtered by "seq <= last seen"; the hub already
            # hands each seq out once. Only the replay can overlap with the live queue.
            replayed: set[int] = set()
            last = after
            if after is not None:
                # Registered before querying, so nothing published meanwhile can fall between.
                async for event in self._stored_after(after, subscriber.kinds):
                    replayed.add(event.seq)
                    last = event.seq
                    yield event
            while True:
                event = await subscriber.queue.get()
                if event is None:
                    raise SubscriberTooSlow(f"fell {self._queue_size} notifications behind", last)
                if event.seq in replayed or (after is not None and event.seq <= after):
                    continue
                last = event.seq
                yield event
        finally:
            self._subscribers.discard(subscriber)
            metrics.LIVE_SUBSCRIPTIONS.dec()

    async def _direct_stream(
        self, kinds: frozenset[str], after: int | None, target: DirectTarget
    ) -> AsyncIterator[Event]:
        shape = self._shapes.get(target.key)
        if shape is None:
            shape = self._shapes[target.key] = target.make_shape(kinds)
            metrics.SHARED_SHAPES.inc()
        sub = _Direct(
            target=target,
            shape=shape,
            task=asyncio.current_task(),
            done=asyncio.get_running_loop().create_future(),
            after=after,
        )
        shape.subscribers[sub] = None  # registered before the replay query: nothing falls between
        metrics.LIVE_SUBSCRIPTIONS.inc()
        try:
            self._ensure_running()
            last = after
            if after is not None:
                await self._start_known.wait()
                async for event in self._stored_after(after, kinds):
                    sub.replayed.add(event.seq)
                    last = event.seq
                    yield event
            # What arrived meanwhile, in arrival order, through the same plain path.
            while sub.backlog:
                event = sub.backlog.popleft()
                if self._skips(sub, event.seq):
                    continue
                last = event.seq
                yield event
            # No await between the empty check above and this: the hub sees either a backlog
            # to append to, or a live subscriber to write to.
            sub.last_seq = last
            sub.live = True
            await sub.done  # set only to cut the subscriber off (SubscriberTooSlow)
        finally:
            sub.ended = True
            shape.subscribers.pop(sub, None)
            if not shape.subscribers and self._shapes.get(target.key) is shape:
                del self._shapes[target.key]
                metrics.SHARED_SHAPES.dec()
            metrics.LIVE_SUBSCRIPTIONS.dec()

    async def _stored_after(self, seq: int, kinds: Iterable[str] | None) -> AsyncIterator[Event]:
        """Every stored event after `seq`, oldest first, however many: read page by page.
        Raises EventsNotRetained (from `events_after`) if some of them were pruned: for a
        subscriber, that ends its subscription with the error, through strawberry."""
        while True:
            page = await self._events_after(seq, kinds, self.REPLAY_PAGE)
            for event in page:
                yield event
            if len(page) < self.REPLAY_PAGE:
                return
            seq = page[-1].seq

    @staticmethod
    def _skips(sub: _Direct, seq: int) -> bool:
        return sub.after is not None and (seq <= sub.after or seq in sub.replayed)

    async def _deliver(self, event: Event) -> None:
        """Hand one event to every local subscriber that wants it, once, in the order events
        arrive (one event at a time: callers hold the delivery lock)."""
        if event.seq in self._recent:
            metrics.HUB_DUPLICATES.inc()
            return
        self._recent[event.seq] = None
        if len(self._recent) > 10_000:
            self._recent.popitem(last=False)
        if self._high_seq is None or event.seq > self._high_seq:
            self._high_seq = event.seq
        for subscriber in list(self._subscribers):
            if subscriber.overflowed or event.kind not in subscriber.kinds:
                continue
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A stalled client must not hold memory for everyone: end its stream instead.
                # What it had queued goes too, so the resume point it is told (the last seq it
                # got) is followed by everything it missed; dropping only the oldest would leave
                # a hole before that point.
                subscriber.overflowed = True
                metrics.SLOW_SUBSCRIBERS.inc()
                while not subscriber.queue.empty():
                    subscriber.queue.get_nowait()
                subscriber.queue.put_nowait(None)
        if self._shapes:
            await self._write_direct(event)

    async def _write_direct(self, event: Event) -> None:
        """Execute the event once per shape and write every live subscriber's frame, in slices.
        (The hot loop of a Daphne node: per subscriber, a few attribute reads and one send.)"""
        budget = self._write_slice
        seq = event.seq
        limit = self._max_unsent_bytes
        for shape in list(self._shapes.values()):
            if event.kind not in shape.kinds:
                continue
            rendered = None
            written = 0
            for sub in list(shape.subscribers):
                if sub.ended:
                    continue
                if not sub.live:
                    if len(sub.backlog) >= self._queue_size:
                        self._cut_off(sub, f"fell {self._queue_size} notifications behind")
                    else:
                        sub.backlog.append(event)
                    continue
                if sub.after is not None and (seq <= sub.after or seq in sub.replayed):
                    continue
                if sub.task is not None and sub.task.cancelling():
                    continue  # completed or disconnected: its task just has not run yet
                if rendered is None:
                    rendered = await shape.render(event)
                    if sub.ended:
                        continue
                target = sub.target
                status = target.wire.write(rendered.frame(target.protocol, target.encoded_id), limit)
                if status > 0:
                    sub.last_seq = seq
                    written += 1
                elif status < 0:
                    self._cut_off(sub, f"has more than {limit} bytes it has not read")
                budget -= 1
                if budget <= 0:
                    # Let pings, handshakes and reads run between slices of a large fan-out.
                    await asyncio.sleep(0)
                    budget = self._write_slice
            if written:
                shape.delivered.inc(written)

    def _cut_off(self, sub: _Direct, behind: str) -> None:
        sub.ended = True
        metrics.SLOW_SUBSCRIBERS.inc()
        if not sub.done.done():
            sub.done.set_exception(SubscriberTooSlow(behind, sub.last_seq))

    # --- layer side ------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._stop_requested = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._stop_requested), name=f"hub:{self.group}"
            )
            RUNNING.add(self)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening (tests, shutdown), within `timeout`.

        One cancel() is not always enough: redis-py's read path (asyncio.timeout around a
        blocking pop) can swallow a cancellation that lands as the read completes, and the task
        carries on. So its loops also check a stop flag, and the cancel is repeated until the
        task has ended."""
        task, self._task = self._task, None
        RUNNING.discard(self)
        self.connected.clear()
        if task is None:
            return
        self._stop_requested.set()
        deadline = asyncio.get_running_loop().time() + timeout
        while not task.done():
            if asyncio.get_running_loop().time() >= deadline:
                log.error("hub %s did not stop within %.1fs", self.group, timeout)
                return
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        await self._leave(max(0.5, deadline - asyncio.get_running_loop().time()))

    async def _leave(self, timeout: float) -> None:
        """Leave the group, so publishes stop writing to a member nobody reads (channels_redis
        would keep it until group_expiry). Best effort: with Redis away, expiry does it later."""
        if self.channel_name is None:
            return
        try:
            await asyncio.wait_for(
                get_channel_layer(self._layer_alias).group_discard(self.group, self.channel_name), timeout
            )
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
        self._start_known.set()
        # The default "specific." prefix matters: channels_redis has one receive lock per layer
        # and its holder only reads its own prefix's queue, so a hub on another prefix would
        # starve behind this process's WebSocket consumers.
        self.channel_name = await layer.new_channel()
        await layer.group_add(self.group, self.channel_name)
        log.info("hub %s joined as %s at seq %s", self.group, self.channel_name, self._high_seq)
        await self._catch_up()  # whatever was published while we were away
        self.connected.set()
        keeper = asyncio.create_task(self._keep_membership(layer, self.channel_name, stop))
        try:
            while not stop.is_set():
                message = await layer.receive(self.channel_name)
                received = time.perf_counter()
                metrics.HUB_MESSAGES.inc()
                event = self._decode(message)
                if self._high_seq is not None and event.seq > self._high_seq + 1:
                    # A gap: something was lost on the way, rolled back, or is still
                    # committing. Deliver what the database already has first, so order holds;
                    # a seq that commits later still goes out when its own message arrives.
                    await self._catch_up()
                async with self._delivery_lock:
                    await self._deliver(event)
                metrics.DELIVERY_SECONDS.observe(time.perf_counter() - received)
        finally:
            keeper.cancel()

    async def _keep_membership(self, layer, channel_name: str, stop: asyncio.Event) -> None:
        """Re-join before group_expiry drops us, re-join at once if Redis forgot us, catch up."""
        since_rejoin = since_catchup = 0.0
        while not stop.is_set():
            await asyncio.sleep(self._check_seconds)
            since_rejoin += self._check_seconds
            since_catchup += self._check_seconds
            try:
                lost = not await self._is_member(layer, channel_name)
                if lost:
                    log.warning("hub %s: membership gone from Redis (restart or flush); re-joining", self.group)
                if lost or since_rejoin >= self._rejoin_seconds:
                    await layer.group_add(self.group, channel_name)
                    metrics.HUB_REJOINS.inc()
                    since_rejoin = 0.0
                if lost or since_catchup >= self._catchup_seconds:
                    await self._catch_up()
                    since_catchup = 0.0
            except Exception as exc:  # the receive loop sees the same outage and reconnects
                log.warning("hub %s maintenance failed: %s: %s", self.group, type(exc).__name__, exc)

    async def _is_member(self, layer, channel_name: str) -> bool:
        group_key = getattr(layer, "_group_key", None)
        if group_key is None:
            # RedisPubSubChannelLayer: membership is a SUBSCRIBE on the layer's own connection,
            # which the layer restores itself when it reconnects.
            return True
        connection = layer.connection(layer.consistent_hash(self.group))
        return await connection.zscore(group_key(self.group), channel_name) is not None

    async def _catch_up(self) -> None:
        async with self._catchup_lock:
            if self._high_seq is None:
                return
            after = self._high_seq
            while True:
                try:
                    async for event in self._stored_after(after, None):
                        if event.seq not in self._recent:
                            metrics.HUB_CAUGHT_UP.inc()
                        async with self._delivery_lock:
                            await self._deliver(event)
                    return
                except EventsNotRetained as gone:
                    # Away for longer than the retention: nobody can deliver what was pruned,
                    # and raising would only make _run reconnect and hit it again. Deliver
                    # what is still stored.
                    log.warning(
                        "hub %s: events after seq %s were pruned before it caught up (oldest "
                        "kept: %s); its subscribers miss them",
                        self.group,
                        gone.after,
                        gone.oldest,
                    )
                    after = gone.oldest - 1
