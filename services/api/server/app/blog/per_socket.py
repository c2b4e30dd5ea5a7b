"""The seed tutorial's fan-out, kept only so the benchmark can compare it (POSTWIRE_FANOUT=per-socket).

Every WebSocket joins the channel-layer group itself (O(subscribers) Redis work per publish) and
reads the post from the database for every message (O(subscribers) queries per publish).
postwire's default is the per-process hub in server.realtime.hub.
"""

from channels.db import database_sync_to_async
from django.conf import settings

from server.app.blog.models import Post
from server.app.blog.notifications import MESSAGE_TYPE, Notification


@database_sync_to_async
def _get_post(post_id: str) -> Post | None:
    return Post.objects.filter(pk=post_id).first()


async def stream(ws, kinds):
    await ws.channel_layer.group_add(settings.POSTS_CHANNEL, ws.channel_name)
    async with ws.listen_to_channel(MESSAGE_TYPE, groups=[settings.POSTS_CHANNEL]) as messages:
        async for message in messages:
            # Several subscriptions on one socket all hear every message of this type: filter.
            if message["kind"] not in kinds:
                continue
            post = await _get_post(message["post_id"])
            if post is not None:
                yield Notification(message["seq"], message["kind"], post.pk, post.title, post.published_at,
                                   message.get("actor_id"))
