"""Subscriptions. Over WebSocket `info.context` is a dict: the consumer is `context["ws"]` and the
session user (from AuthMiddlewareStack) is in its scope.

Each resolver checks what it must at subscribe time; then its subscriber replays what it missed
(`after`) and receives live events from the hub until it ends or is cut off. With direct delivery
(the default) the hub writes live events itself, executing each once per distinct subscription
(server.realtime.fanout), so `live()` yields only what arrived during the replay.
"""

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import strawberry
from django.core.exceptions import PermissionDenied
from strawberry.types import Info

from server import errors
from server.app.blog.graph.types import DraftActivity, PostNotification, Seq
from server.app.blog.models import PostEvent
from server.app.blog.notifications import Notification, get_hub
from server.realtime.metrics import NOTIFICATIONS_DELIVERED

log = logging.getLogger(__name__)

_ALL_KINDS = frozenset(PostEvent.Kind.values)


async def _events(info: Info, kinds, after: int | None, to_graphql: Callable[[Notification], object]) -> AsyncIterator:
    delivered = NOTIFICATIONS_DELIVERED.labels(info.field_name)
    subscriber = get_hub().subscribe(info, kinds, after=after, to_source=to_graphql, delivered=delivered)
    try:
        async with subscriber:
            async for event in subscriber.replay():  # what it missed, from PostgreSQL
                yield to_graphql(event)
            async for event in subscriber.live():  # until it ends, or is cut off for falling behind
                yield to_graphql(event)
    except Exception as exc:
        if not errors.is_outage(exc):
            raise
        log.warning("subscription %s ended by an outage: %s: %s", info.field_name, type(exc).__name__, exc)
        raise errors.ServiceUnavailable() from exc


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="A post was published. `after`: replay from that seq first (an error asks you to "
        "refetch if events after it are no longer retained)."
    )
    async def post_notify(self, info: Info, after: Seq | None = None) -> AsyncGenerator[PostNotification, None]:
        async for n in _events(info, {PostEvent.Kind.PUBLISHED}, after, PostNotification.from_notification):
            yield n

    @strawberry.subscription(description="Every change to every post, drafts included. Staff only.")
    async def draft_activity(self, info: Info, after: Seq | None = None) -> AsyncGenerator[DraftActivity, None]:
        user = info.context["ws"].scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            raise PermissionDenied(
                "draftActivity is for staff only: log in over HTTP, then open the WebSocket with the session cookie."
            )
        async for n in _events(info, _ALL_KINDS, after, DraftActivity.from_notification):
            yield n
