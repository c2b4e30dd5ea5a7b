"""What the blog does, as plain functions. GraphQL resolvers, the admin and commands call these.

Each change writes its PostEvent in the same transaction and broadcasts it only after commit.
Permission checks here are the server's rule, whatever the caller (the GraphQL layer adds its
own declarative guards on top).
"""

from __future__ import annotations

import datetime
import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from server.app.blog.models import Post, PostEvent
from server.app.blog.notifications import broadcast_on_commit, oldest_seq


def visible_posts(user):
    """Published posts for everyone; drafts only for their author and for staff."""
    posts = Post.objects.all()
    if user is None or not user.is_authenticated:
        return posts.filter(published=True)
    if user.is_staff:
        return posts
    return posts.filter(published=True) | posts.filter(author=user)


def _record(kind: str, post: Post, actor) -> PostEvent:
    event = PostEvent.objects.create(
        kind=kind, post_id=post.pk, title=post.title, published_at=post.published_at, actor=actor
    )
    broadcast_on_commit(event)
    return event


def _editable(post_id: uuid.UUID, user) -> Post:
    post = Post.objects.select_for_update().get(pk=post_id)
    if post.author_id != user.pk and not user.is_staff:
        raise PermissionDenied("Only the author or staff may change this post.")
    return post


def _clean_title(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise ValidationError({"title": "Title may not be blank."})
    if len(title) > Post._meta.get_field("title").max_length:
        raise ValidationError({"title": "Title is longer than 200 characters."})
    return title


@transaction.atomic
def post_create(*, author, title: str, content: str = "") -> Post:
    post = Post.objects.create(author=author, title=_clean_title(title), content=content or "")
    _record(PostEvent.Kind.CREATED, post, author)
    return post


@transaction.atomic
def post_update(*, post_id: uuid.UUID, user, title: str | None = None, content: str | None = None) -> Post:
    post = _editable(post_id, user)
    if title is not None:
        post.title = _clean_title(title)
    if content is not None:
        post.content = content
    post.save()
    _record(PostEvent.Kind.UPDATED, post, user)
    return post


@transaction.atomic
def post_delete(*, post_id: uuid.UUID, user) -> Post:
    post = _editable(post_id, user)
    _record(PostEvent.Kind.DELETED, post, user)
    post.delete()
    post.pk = post_id  # keep the id on the returned object for the client
    return post


@transaction.atomic
def post_publish(*, post_id: uuid.UUID, user) -> Post:
    """Publish a draft and notify subscribers after commit. Publishing twice notifies once."""
    if not (user.is_staff and user.has_perms(["blog.publish_post", "blog.view_post"])):
        raise PermissionDenied("Publishing needs staff status and the blog.publish_post permission.")
    # The row lock serialises concurrent publishes of one post: only the first one notifies.
    post = Post.objects.select_for_update().get(pk=post_id)
    if post.published:
        return post
    post.published = True
    post.published_at = timezone.now()
    post.save(update_fields=["published", "published_at", "updated_at"])
    _record(PostEvent.Kind.PUBLISHED, post, user)
    return post


def prune_events(*, older_than: datetime.datetime, batch_size: int = 10_000) -> tuple[int, int | None]:
    """Delete PostEvents created before `older_than`, lowest seq first, `batch_size` rows per
    statement (each its own short transaction). Returns (rows deleted, oldest seq kept).

    The newest event is always kept, so that latest_seq() (where a hub starts) and the refusal
    of a resume from before the oldest kept event keep working when nothing new is written.
    (Deleted seqs are never handed out again whatever is kept: `seq` is a PostgreSQL identity
    column, whose sequence only moves forward.)
    """
    newest = PostEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    if newest is None:
        return 0, None
    # The cut is a seq, not a time: created_at is stamped before the row gets its seq, so two
    # concurrent writes can have them in opposite orders. Deleting every seq up to the cut, lowest
    # first, means that at any moment what is stored is everything above some seq: the property
    # events_after relies on to tell a complete resume from one with pruned events in it.
    cut = PostEvent.objects.filter(created_at__lt=older_than, seq__lt=newest).aggregate(cut=Max("seq"))["cut"]
    deleted = 0
    while cut is not None:
        batch = PostEvent.objects.filter(seq__lte=cut).order_by("seq").values("seq")[:batch_size]
        count, _ = PostEvent.objects.filter(seq__in=batch).delete()
        deleted += count
        if count < batch_size:
            break
    return deleted, oldest_seq()
