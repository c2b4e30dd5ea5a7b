"""What the blog reads, as plain functions (Django-Styleguide's selectors; services.py writes).

Each read has one home here: who may see which posts, and the stored event history that
subscribers resume from and hubs catch up from. Synchronous, like the ORM; async callers wrap
them (server.app.blog.notifications adapts the event reads to the hub's callbacks).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from server.app.blog.models import Post, PostEvent
from server.realtime.hub import EventsNotRetained


def post_list_visible_to(*, user) -> QuerySet[Post]:
    """Published posts for everyone; drafts only for their author and for staff."""
    posts = Post.objects.all()
    if user is None or not user.is_authenticated:
        return posts.filter(published=True)
    if user.is_staff:
        return posts
    return posts.filter(published=True) | posts.filter(author=user)


def post_get(*, post_id: uuid.UUID | str) -> Post | None:
    """One post by id, whoever may see it (for server-side use: callers check visibility)."""
    return Post.objects.filter(pk=post_id).first()


def post_event_latest_seq() -> int:
    """The newest stored event's seq, 0 when none is stored (seqs start at 1)."""
    last = PostEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    return last or 0


def post_event_oldest_seq() -> int | None:
    """The oldest stored event's seq (prune_events deletes from the lowest up), None when none is."""
    return PostEvent.objects.order_by("seq").values_list("seq", flat=True).first()


def post_event_list_after(*, seq: int, kinds: Iterable[str] | None = None, limit: int = 1000) -> list[PostEvent]:
    """Up to `limit` events stored after `seq`, oldest first (the hub reads a longer gap page by page).

    Raises EventsNotRetained if an event after `seq` may have been pruned: the oldest stored
    event is not `seq + 1` or earlier. (A seq rolled back just below the oldest stored event
    makes this refuse a resume that was in fact complete; it never lets a pruned event pass.)"""
    rows = PostEvent.objects.filter(seq__gt=seq).order_by("seq")
    if kinds is not None:
        rows = rows.filter(kind__in=list(kinds))
    page = list(rows[:limit])
    # Checked after reading the page: prune_events deletes from the lowest seq up, so if nothing
    # after `seq` is gone now, nothing was gone when the page was read either.
    oldest = post_event_oldest_seq()
    if oldest is not None and seq < oldest - 1:
        raise EventsNotRetained(seq, oldest)
    return page
