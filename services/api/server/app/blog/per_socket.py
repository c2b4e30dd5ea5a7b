"""The fan-out of the Strawberry + Django Channels tutorial postwire started from, kept only so the
benchmark can compare it (POSTWIRE_FANOUT=per-socket).

Every WebSocket joins the channel-layer group itself (O(subscribers) Redis work per publish) and
reads the post from the database for every message (O(subscribers) queries per publish).
postwire's default is the per-process hub in server.realtime.hub.

A resume (`after`) is refused with an error, neither ignored (the client would believe it has
no gap) nor served: the tutorial has no replay, the benchmark never resumes, and a replay here
would repeat the hub's join-then-replay de-duplication on a path no deployment runs.
"""

from channels.db import database_sync_to_async
from django.conf import settings

from server.app.blog import selectors
from server.app.blog.notifications import MESSAGE_TYPE, Notification


class ResumeNotSupported(Exception):
    def __init__(self) -> None:
        super().__init__(
            "`after` is not supported with POSTWIRE_FANOUT=per-socket (the tutorial's fan-out, "
            "kept for the benchmark): subscribe without it, or run the shared or hub fan-out"
        )


_get_post = database_sync_to_async(selectors.post_get)


async def stream(ws, kinds, after: int | None = None):
    if after is not None:
        raise ResumeNotSupported()
    # listen_to_channel joins the group on entry and leaves it on exit: no group_add of our own.
    async with ws.listen_to_channel(MESSAGE_TYPE, groups=[settings.POSTS_CHANNEL]) as messages:
        async for message in messages:
            # Several subscriptions on one socket all hear every message of this type: filter.
            if message["kind"] not in kinds:
                continue
            post = await _get_post(post_id=message["post_id"])
            if post is not None:
                yield Notification(
                    message["seq"], message["kind"], post.pk, post.title, post.published_at, message.get("actor_id")
                )
