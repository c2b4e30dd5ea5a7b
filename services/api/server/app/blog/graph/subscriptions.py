"""Subscriptions. Over WebSocket `info.context` is a dict: the consumer is `context["ws"]` and the
session user (from AuthMiddlewareStack) is in its scope."""

from collections.abc import AsyncGenerator

import strawberry
from django.conf import settings
from django.core.exceptions import PermissionDenied
from strawberry.types import Info

from server.app.blog import per_socket
from server.app.blog.graph.types import DraftActivity, PostNotification
from server.app.blog.models import PostEvent
from server.app.blog.notifications import get_hub
from server.realtime.metrics import NOTIFICATIONS_DELIVERED

_delivered_post_notify = NOTIFICATIONS_DELIVERED.labels("postNotify")
_delivered_draft_activity = NOTIFICATIONS_DELIVERED.labels("draftActivity")
_ALL_KINDS = frozenset(PostEvent.Kind.values)


def _events(info: Info, kinds, after: int | None):
    if settings.FANOUT_MODE == "per-socket":
        return per_socket.stream(info.context["ws"], kinds)
    return get_hub().stream(kinds, after=after)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="A post was published. `after`: replay from that seq first.")
    async def post_notify(self, info: Info, after: int | None = None) -> AsyncGenerator[PostNotification, None]:
        async for n in _events(info, {PostEvent.Kind.PUBLISHED}, after):
            _delivered_post_notify.inc()
            yield PostNotification.from_notification(n)

    @strawberry.subscription(description="Every change to every post, drafts included. Staff only.")
    async def draft_activity(self, info: Info, after: int | None = None) -> AsyncGenerator[DraftActivity, None]:
        user = info.context["ws"].scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            raise PermissionDenied(
                "draftActivity is for staff only: log in over HTTP, then open the WebSocket "
                "with the session cookie."
            )
        async for n in _events(info, _ALL_KINDS, after):
            _delivered_draft_activity.inc()
            yield DraftActivity.from_notification(n)
