"""What the blog does, as plain functions. GraphQL resolvers, the admin and commands call these.

Each change writes its PostEvent in the same transaction and broadcasts it only after commit.
Permission checks here are the server's rule, whatever the caller (the GraphQL layer adds its
own declarative guards on top).
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from server.app.blog.models import Post, PostEvent
from server.app.blog.notifications import broadcast_on_commit


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
