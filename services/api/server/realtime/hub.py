"""The per-process hub: the group membership (membership.py) feeding the local fan-out (fanout.py).

`subscribe()` is what a subscription resolver calls; it decides how this subscriber's live
events travel (direct: the hub writes them; strawberry: strawberry executes and sends them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from strawberry.types import Info

from server.realtime import shapes
from server.realtime.fanout import (
    REPLAY_PAGE,
    Delivery,
    DirectSubscription,
    Event,
    EventsAfter,
    EventsNotRetained,
    Fanout,
    QueuedSubscription,
    SubscriberTooSlow,
    Subscription,
)
from server.realtime.membership import GroupMembership
from server.realtime.operations import current_operation

__all__ = ["Delivery", "EventsNotRetained", "Hub", "RUNNING", "SubscriberTooSlow"]

RUNNING: set[Hub] = set()  # hubs of this process with a live task: what a drain stops


class Hub:
    REPLAY_PAGE = REPLAY_PAGE

    def __init__(
        self,
        *,
        group: str,
        decode: Callable[[dict[str, Any]], Event],
        latest_seq: Callable[[], Awaitable[int]],
        events_after: EventsAfter,
        rejoin_seconds: float,
        catchup_seconds: float,
        queue_size: int,
        check_seconds: float = 5.0,
        layer_alias: str = "default",
        max_unsent_bytes: int = 512 * 1024,
        delivery: Delivery = Delivery.DIRECT,
    ) -> None:
        self.delivery = delivery
        self.max_unsent_bytes = max_unsent_bytes
        self.queue_size = queue_size
        self.membership = GroupMembership(
            group=group,
            decode=decode,
            latest_seq=latest_seq,
            events_after=events_after,
            deliver=self._deliver,
            rejoin_seconds=rejoin_seconds,
            catchup_seconds=catchup_seconds,
            check_seconds=check_seconds,
            layer_alias=layer_alias,
        )
        self.fanout = Fanout(
            events_after=events_after, start_known=self.membership.start_known.wait, queue_size=queue_size
        )

    @property
    def group(self) -> str:
        return self.membership.group

    @property
    def connected(self):
        return self.membership.connected

    @property
    def channel_name(self) -> str | None:
        return self.membership.channel_name

    async def _deliver(self, event: Event) -> None:
        await self.fanout.deliver(event)

    def _ensure_running(self) -> None:
        if not self.membership.running:
            self.membership.start()
            RUNNING.add(self)

    async def stop(self, timeout: float = 5.0) -> None:
        RUNNING.discard(self)
        await self.membership.stop(timeout)

    def subscribe(
        self, info: Info, kinds: Iterable[str], *, after: int | None, to_source: Callable[[Event], Any], delivered
    ) -> Subscription:
        """A subscription to this hub's events of `kinds`, with `after` replayed first. Direct
        delivery where this subscriber allows it (a WebSocket operation, a schema whose results
        can be shared), else the strawberry path."""
        self._ensure_running()
        kinds = frozenset(kinds)
        operation = current_operation()
        if (
            self.delivery is Delivery.DIRECT
            and operation is not None
            and shapes.unsupported_reason(info.schema) is None
        ):
            schema = info.schema
            key, context = shapes.shape_key(operation, schema)
            return DirectSubscription(
                self.fanout,
                kinds,
                after,
                delivered,
                operation=operation,
                shape_key=key,
                make_shape=lambda: shapes.make_shape(
                    operation, schema, context, to_source=to_source, kinds=kinds, delivered=delivered
                ),
                writer=operation.connection.writer(max_unsent=self.max_unsent_bytes, max_queued=self.queue_size),
            )
        return QueuedSubscription(self.fanout, kinds, after, delivered, self.queue_size)

    async def stream(self, kinds: Iterable[str], after: int | None = None) -> AsyncIterator[Event]:
        """Events of `kinds` for one subscriber on the strawberry path (tests, tools): what was
        stored after `after`, then live events."""
        self._ensure_running()
        async with QueuedSubscription(self.fanout, frozenset(kinds), after, _NotCounted(), self.queue_size) as sub:
            async for event in sub.replay():
                yield event
            async for event in sub.live():
                yield event


class _NotCounted:
    def inc(self, amount: int = 1) -> None:
        pass
