"""The tutorial's subscription, on postwire's models and types (so its frames read the same)."""

from collections.abc import AsyncGenerator

import strawberry
from channels.db import database_sync_to_async
from django.conf import settings
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from server.app.blog import selectors
from server.app.blog.graph.types import SCALAR_MAP, PostNotification, Seq
from server.app.blog.notifications import MESSAGE_TYPE, Notification
from server.schema import ServerQuery, ServerSubscription


class ResumeNotSupported(Exception):
    def __init__(self) -> None:
        super().__init__(
            "`after` is not supported by the tutorial's fan-out (a benchmark baseline): subscribe without it"
        )


_get_post = database_sync_to_async(selectors.post_get)


@strawberry.type
class TutorialSubscription:
    @strawberry.subscription
    async def post_notify(
        self, info: strawberry.Info, after: Seq | None = None
    ) -> AsyncGenerator[PostNotification, None]:
        if after is not None:
            raise ResumeNotSupported()
        ws = info.context["ws"]
        # listen_to_channel joins the group on entry and leaves it on exit.
        async with ws.listen_to_channel(MESSAGE_TYPE, groups=[settings.POSTS_CHANNEL]) as messages:
            async for message in messages:
                # Several subscriptions on one socket all hear every message of this type: filter.
                if message["kind"] != "published":
                    continue
                post = await _get_post(post_id=message["post_id"])
                if post is not None:
                    yield PostNotification.from_notification(
                        Notification(message["seq"], message["kind"], post.pk, post.title, post.published_at)
                    )


Subscription = merge_types("Subscription", (ServerSubscription, TutorialSubscription))

schema = strawberry.Schema(query=ServerQuery, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALAR_MAP))
