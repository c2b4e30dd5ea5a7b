"""Local fan-out: a node's subscriptions, and how each event reaches them.

Every subscription first replays what it missed (`after`) from PostgreSQL, through strawberry,
then receives live events from the hub until it ends or is cut off, in one of two ways:
- direct (POSTWIRE_DELIVERY=direct, the default): subscribers are grouped by shape
  (server.realtime.shapes); the hub executes each event once per shape and writes every
  subscriber's message itself (server.realtime.sockets), in slices that let the event loop
  breathe. Events that arrive while a subscriber replays wait in its backlog and go through
  strawberry after the replay, so its messages stay in seq order.
- strawberry (POSTWIRE_DELIVERY=strawberry, or where shared execution is off): each subscriber
  has a bounded queue that its resolver drains; strawberry executes and sends per subscriber.
Either way a subscriber that falls behind is cut off with SubscriberTooSlow, naming the seq to
resume after, and every delivery is counted here.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from server.realtime import metrics
from server.realtime.operations import Operation
from server.realtime.sockets import Write, Writer

if TYPE_CHECKING:
    from server.realtime.shapes import Shape


class Event(Protocol):
    seq: int
    kind: str


class Delivery(enum.StrEnum):
    DIRECT = "direct"  # the hub executes once per shape and writes every subscriber's message
    STRAWBERRY = "strawberry"  # strawberry executes and sends per subscriber


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


EventsAfter = Callable[[int, Iterable[str] | None, int], Awaitable[list[Event]]]

REPLAY_PAGE = 1000  # events per database read when replaying `after` or catching up


async def stored_after(events_after: EventsAfter, seq: int, kinds: Iterable[str] | None) -> AsyncIterator[Event]:
    """Every stored event after `seq`, oldest first, however many: read page by page. Raises
    EventsNotRetained (from `events_after`) if some of them were pruned."""
    while True:
        page = await events_after(seq, kinds, REPLAY_PAGE)
        for event in page:
            yield event
        if len(page) < REPLAY_PAGE:
            return
        seq = page[-1].seq


class Subscription:
    """One subscriber's stream: `replay()` then `live()`, inside `async with` (which registers it
    with the fan-out first, so nothing published meanwhile falls between the two)."""

    def __init__(self, fanout: Fanout, kinds: frozenset[str], after: int | None, delivered) -> None:
        self.fanout = fanout
        self.kinds = kinds
        self.after = after
        self.delivered = delivered  # the Prometheus counter child for this subscription field
        self.replayed: set[int] = set()
        self.last_seq: int | None = after
        self.ended = False

    async def __aenter__(self) -> Subscription:
        self.fanout.register(self)
        metrics.LIVE_SUBSCRIPTIONS.inc()
        return self

    async def __aexit__(self, *exc) -> None:
        self.ended = True
        self.fanout.unregister(self)
        metrics.LIVE_SUBSCRIPTIONS.dec()

    async def replay(self) -> AsyncIterator[Event]:
        """What was stored after `after`, from PostgreSQL (nothing without `after`)."""
        if self.after is None:
            return
        await self.fanout.start_known()
        async for event in stored_after(self.fanout.events_after, self.after, self.kinds):
            self.replayed.add(event.seq)
            self.last_seq = event.seq
            self.delivered.inc()
            yield event

    def skips(self, seq: int) -> bool:
        """Already replayed, or not after the resume point."""
        return self.after is not None and (seq <= self.after or seq in self.replayed)

    def live(self) -> AsyncIterator[Event]:
        raise NotImplementedError


class QueuedSubscription(Subscription):
    """The strawberry path: live events wait in a bounded queue for the resolver."""

    def __init__(self, fanout: Fanout, kinds, after, delivered, queue_size: int) -> None:
        super().__init__(fanout, kinds, after, delivered)
        self.queue: asyncio.Queue = asyncio.Queue(queue_size)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed or event.kind not in self.kinds:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A stalled client must not hold memory for everyone: end its stream instead. What it
            # had queued goes too, so the resume point it is told (the last seq it got) is
            # followed by everything it missed.
            self.overflowed = True
            metrics.SLOW_SUBSCRIBERS.inc()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def live(self) -> AsyncIterator[Event]:
        # Live events can arrive out of seq order (two publishes committing in the other order),
        # so live delivery is never filtered by "seq <= last seen"; the hub hands each seq out
        # once. Only the replay can overlap with the live queue.
        while True:
            event = await self.queue.get()
            if event is None:
                raise SubscriberTooSlow(f"fell {self.queue.maxsize} notifications behind", self.last_seq)
            if self.skips(event.seq):
                continue
            self.last_seq = event.seq
            self.delivered.inc()
            yield event


class DirectSubscription(Subscription):
    """The direct path: the hub writes this subscriber's live messages itself (its writer);
    until it is `live`, events wait in `backlog` while its replay goes through strawberry."""

    def __init__(self, fanout: Fanout, kinds, after, delivered, *, operation: Operation, shape_key, make_shape, writer):
        super().__init__(fanout, kinds, after, delivered)
        self.operation = operation
        self.protocol = operation.protocol
        self.shape_key = shape_key
        self.make_shape = make_shape  # called if no subscriber of this shape is registered yet
        self.shape: Shape | None = None
        self.writer: Writer = writer
        self.encoded_id: str = operation.consumer.encode_json(operation.id)
        self.task = asyncio.current_task()
        self.done = asyncio.get_running_loop().create_future()  # set only to cut it off
        self.backlog: collections.deque = collections.deque()
        self.is_live = False

    async def live(self) -> AsyncIterator[Event]:
        # What arrived during the replay, in arrival order, through strawberry.
        while self.backlog:
            event = self.backlog.popleft()
            if self.skips(event.seq):
                continue
            self.last_seq = event.seq
            self.delivered.inc()
            yield event
        # No await between the empty check above and this: the hub sees either a backlog to
        # append to, or a live subscriber to write to.
        self.is_live = True
        await self.done  # from here the hub writes; this raises SubscriberTooSlow if cut off
        return
        yield  # an async generator that yields nothing more


class Fanout:
    """The subscriptions of one node, and the delivery of each event to them."""

    def __init__(
        self,
        *,
        events_after: EventsAfter,
        start_known: Callable[[], Awaitable[None]],
        queue_size: int,
        write_slice: int = 1000,
    ) -> None:
        self.events_after = events_after
        self.start_known = start_known
        self.queue_size = queue_size
        self.write_slice = write_slice
        self.queued: set[QueuedSubscription] = set()
        self.shapes: dict[tuple, Shape] = {}  # by shape key (server.realtime.shapes.shape_key)

    def register(self, subscription: Subscription) -> None:
        if isinstance(subscription, DirectSubscription):
            shape = self.shapes.get(subscription.shape_key)
            if shape is None:
                shape = self.shapes[subscription.shape_key] = subscription.make_shape()
                shape.key = subscription.shape_key
                metrics.SHARED_SHAPES.inc()
            subscription.shape = shape
            shape.subscribers[subscription] = None
        else:
            self.queued.add(subscription)

    def unregister(self, subscription: Subscription) -> None:
        if isinstance(subscription, DirectSubscription):
            shape = subscription.shape
            if shape is None:
                return
            shape.subscribers.pop(subscription, None)
            if not shape.subscribers and self.shapes.get(shape.key) is shape:
                del self.shapes[shape.key]
                metrics.SHARED_SHAPES.dec()
        else:
            self.queued.discard(subscription)

    async def deliver(self, event: Event) -> None:
        """Hand one event to every local subscription that wants it (one event at a time)."""
        for subscription in list(self.queued):
            subscription.offer(event)
        if self.shapes:
            await self._write(event)

    async def _write(self, event: Event) -> None:
        """Execute the event once per shape and write every live subscriber's message, in slices.
        (The hot loop of a node: per subscriber, a few attribute reads and one send.)"""
        budget = self.write_slice
        seq = event.seq
        for shape in list(self.shapes.values()):
            if event.kind not in shape.kinds:
                continue
            rendered = None
            written = 0
            for sub in list(shape.subscribers):
                if sub.ended:
                    continue
                if not sub.is_live:
                    if len(sub.backlog) >= self.queue_size:
                        self._cut_off(sub, f"fell {self.queue_size} notifications behind")
                    else:
                        sub.backlog.append(event)
                    continue
                if sub.after is not None and (seq <= sub.after or seq in sub.replayed):
                    continue  # sub.skips(seq), inline: this loop runs once per subscriber
                if sub.task is not None and sub.task.cancelling():
                    continue  # completed or disconnected: its task just has not run yet
                if rendered is None:
                    rendered = await shape.render(event)
                    if sub.ended:
                        continue
                status = sub.writer.write(sub, rendered, sub.protocol, sub.encoded_id, seq)
                if status is Write.WRITTEN:
                    written += 1
                elif status is Write.TOO_SLOW:
                    self._cut_off(sub, _too_slow(sub.writer))
                budget -= 1
                if budget <= 0:
                    # Let pings, handshakes and reads run between slices of a large fan-out.
                    await asyncio.sleep(0)
                    budget = self.write_slice
            if written:
                shape.delivered.inc(written)

    def _cut_off(self, sub: DirectSubscription, behind: str) -> None:
        sub.ended = True
        metrics.SLOW_SUBSCRIBERS.inc()
        if not sub.done.done():
            sub.done.set_exception(SubscriberTooSlow(behind, sub.last_seq))


def _too_slow(writer) -> str:
    limit = getattr(writer, "max_unsent", None)
    if limit is not None:
        return f"has more than {limit} bytes it has not read"
    return f"fell {writer.max_queued} notifications behind"
