"""Blog events on the wire: what a notification carries, how it is sent, how it is recovered.

The data path, top to bottom:
  services.post_publish  -> writes Post + PostEvent in one transaction
  broadcast_on_commit    -> after COMMIT only (in an HTTP request: once its response is written),
                            one group_send of the event (no post lookup later)
  realtime.membership    -> the hub's one group member per Daphne process receives it once
  realtime.fanout        -> executes it once per subscription shape, writes every local subscriber
  graph.subscriptions    -> the resolvers: replay of `after`, then live events
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from server.app.blog import selectors
from server.app.blog.models import PostEvent
from server.realtime import after_response, publish
from server.realtime.hub import Delivery, Hub

MESSAGE_TYPE = "post.event"  # the channel-layer message "type" (a consumer would route on it)


@dataclass(frozen=True, slots=True)
class Notification:
    """Immutable and shared: one object per event per process, handed to every subscriber."""

    seq: int
    kind: str
    post_id: uuid.UUID
    title: str
    published_at: datetime.datetime | None
    actor_id: int | None = None  # who made the change (for viewer-dependent fields)

    @classmethod
    def from_event(cls, event: PostEvent) -> Notification:
        return cls(event.seq, event.kind, event.post_id, event.title, event.published_at, event.actor_id)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Notification:
        published_at = message.get("published_at")
        return cls(
            seq=int(message["seq"]),
            kind=message["kind"],
            post_id=uuid.UUID(message["post_id"]),
            title=message["title"],
            published_at=datetime.datetime.fromisoformat(published_at) if published_at else None,
            actor_id=message.get("actor_id"),
        )

    def to_message(self) -> dict[str, Any]:
        return {
            "type": MESSAGE_TYPE,
            "seq": self.seq,
            "kind": self.kind,
            "post_id": str(self.post_id),
            "title": self.title,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "actor_id": self.actor_id,
        }


def broadcast_on_commit(event: PostEvent) -> None:
    """Send the event once the surrounding transaction commits; a rollback sends nothing. In an
    HTTP request the send waits, after the commit, for the response to be written (see
    realtime/after_response.py: the Daphne nodes it wakes would slow the rest of the request)."""
    message = Notification.from_event(event).to_message()
    transaction.on_commit(lambda: after_response.call(publish.group_send, settings.POSTS_CHANNEL, message))


# The hub's two reads (its `latest_seq` and `events_after` callbacks): the selectors, off the
# event loop, returning what the hub hands to subscribers.


@database_sync_to_async
def latest_seq() -> int:
    return selectors.post_event_latest_seq()


@database_sync_to_async
def events_after(seq: int, kinds: Iterable[str] | None = None, limit: int = 1000) -> list[Notification]:
    """selectors.post_event_list_after as Notifications (it raises EventsNotRetained for a gap
    with pruned events in it)."""
    page = selectors.post_event_list_after(seq=seq, kinds=kinds, limit=limit)
    return [Notification.from_event(row) for row in page]


@functools.cache
def get_hub() -> Hub:
    """This process's hub (created lazily, started by the first subscription)."""
    return Hub(
        group=settings.POSTS_CHANNEL,
        decode=Notification.from_message,
        latest_seq=latest_seq,
        events_after=events_after,
        rejoin_seconds=settings.HUB_REJOIN_SECONDS,
        catchup_seconds=settings.HUB_CATCHUP_SECONDS,
        queue_size=settings.HUB_SUBSCRIBER_QUEUE,
        check_seconds=settings.HUB_CHECK_SECONDS,
        max_unsent_bytes=settings.WS_MAX_UNSENT_BYTES,
        delivery=Delivery(settings.DELIVERY),
    )
