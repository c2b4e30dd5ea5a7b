"""What the blog does (its writes), as plain functions. GraphQL resolvers, the admin and commands
call these; what it reads is in selectors.py.

Each change writes its PostEvent in the same transaction and broadcasts it only after commit.
Permission checks here are the server's rule, whatever the caller (the GraphQL layer adds its
own declarative guards on top).
"""

from __future__ import annotations

import datetime
import functools
import uuid

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from server.app.authentication.backends import MODEL_BACKEND
from server.app.blog import selectors
from server.app.blog.models import Post, PostEvent
from server.app.blog.notifications import broadcast_on_commit
from server.app.blog.permissions import PUBLISH_POST, PUBLISHER_PERMISSIONS


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


def post_publish(*, post_id: uuid.UUID, user) -> Post:
    """Publish a draft and notify subscribers after commit. Publishing twice notifies once.

    The common case (a publisher publishing a draft) is one SQL statement: it checks the
    permissions, flips the draft and writes its PostEvent, and being one statement it is its own
    transaction (or part of the caller's, whose commit then sends the broadcast). Anything else
    (no such post, already published, permission refused or granted other than by Django's
    ModelBackend) takes the locked path below, which says what happened."""
    if not user.is_staff:
        raise PermissionDenied(f"Publishing needs staff status and the {PUBLISH_POST} permission.")
    published = _publish_draft(post_id, user)
    if published is not None:
        post, event = published
        broadcast_on_commit(event)
        return post
    return _post_publish_locked(post_id=post_id, user=user)


@transaction.atomic
def _post_publish_locked(*, post_id: uuid.UUID, user) -> Post:
    if not (user.is_staff and user.has_perms(PUBLISHER_PERMISSIONS)):
        raise PermissionDenied(f"Publishing needs staff status and the {PUBLISH_POST} permission.")
    # The row lock serialises concurrent publishes of one post: only the first one notifies.
    post = Post.objects.select_for_update().get(pk=post_id)
    if post.published:
        return post
    post.published = True
    post.published_at = timezone.now()
    post.save(update_fields=["published", "published_at", "updated_at"])
    _record(PostEvent.Kind.PUBLISHED, post, user)
    return post


@functools.cache
def _publish_draft_sql() -> str:
    """UPDATE ... RETURNING the draft, INSERT ... RETURNING its event: one statement, one round
    trip, no BEGIN/COMMIT and no SELECT ... FOR UPDATE. `NOT published` in the UPDATE's WHERE is
    re-checked by PostgreSQL after waiting for a concurrent publish's row lock, so of two
    concurrent publishes only one updates the row and writes an event (the other finds nothing
    to update and takes the locked path, which returns the published post).

    The permission test is ModelBackend's rule for an active user: each of PUBLISHER_PERMISSIONS
    granted to the user directly or through one of their groups (superusers skip it)."""
    from django.contrib.auth.models import Group, Permission, User
    from django.contrib.contenttypes.models import ContentType

    qn = connection.ops.quote_name
    user_perms = User.user_permissions.through._meta
    user_groups = User.groups.through._meta
    group_perms = Group.permissions.through._meta
    post_columns = ", ".join(qn(f.column) for f in Post._meta.concrete_fields)
    wanted = " OR ".join("(ct.app_label = %s AND p.codename = %s)" for _ in PUBLISHER_PERMISSIONS)
    return f"""
        WITH published AS (
            UPDATE {qn(Post._meta.db_table)}
               SET published = true, published_at = %s, updated_at = %s
             WHERE id = %s AND NOT published AND (%s OR (
                SELECT count(DISTINCT p.id) = {len(PUBLISHER_PERMISSIONS)}
                  FROM {qn(Permission._meta.db_table)} p
                  JOIN {qn(ContentType._meta.db_table)} ct ON ct.id = p.content_type_id
                 WHERE ({wanted})
                   AND (p.id IN (SELECT permission_id FROM {qn(user_perms.db_table)} WHERE user_id = %s)
                        OR p.id IN (SELECT gp.permission_id FROM {qn(group_perms.db_table)} gp
                                      JOIN {qn(user_groups.db_table)} ug ON ug.group_id = gp.group_id
                                     WHERE ug.user_id = %s))))
            RETURNING {post_columns}
        ), event AS (
            INSERT INTO {qn(PostEvent._meta.db_table)} (kind, post_id, title, published_at, actor_id, created_at)
            SELECT %s, id, title, published_at, %s, %s FROM published
            RETURNING seq
        )
        SELECT {", ".join(f"published.{qn(f.column)}" for f in Post._meta.concrete_fields)}, event.seq
          FROM published CROSS JOIN event"""


def _publish_draft(post_id: uuid.UUID, user) -> tuple[Post, PostEvent] | None:
    """Publish `post_id` if it is a draft and `user` (staff) holds PUBLISHER_PERMISSIONS through
    ModelBackend, in one statement; None if it did nothing (the caller finds out why)."""
    if not user.is_active or MODEL_BACKEND not in settings.AUTHENTICATION_BACKENDS:
        return None
    now = timezone.now()
    wanted = [part for name in PUBLISHER_PERMISSIONS for part in name.split(".", 1)]
    params = [
        now,
        now,
        post_id,
        user.is_superuser,
        *wanted,
        user.pk,
        user.pk,
        PostEvent.Kind.PUBLISHED.value,
        user.pk,
        now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_publish_draft_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    fields = [f.attname for f in Post._meta.concrete_fields]
    post = Post.from_db(connection.alias, fields, row[: len(fields)])
    event = PostEvent(
        seq=row[-1],
        kind=PostEvent.Kind.PUBLISHED,
        post_id=post.pk,
        title=post.title,
        published_at=post.published_at,
        actor_id=user.pk,
        created_at=now,
    )
    event._state.adding = False
    return post, event


def prune_events(*, older_than: datetime.datetime, batch_size: int = 10_000) -> tuple[int, int | None]:
    """Delete PostEvents created before `older_than`, lowest seq first, `batch_size` rows per
    statement (each its own short transaction). Returns (rows deleted, oldest seq kept).

    The newest event is always kept, so that selectors.post_event_latest_seq() (where a hub
    starts) and the refusal of a resume from before the oldest kept event keep working when
    nothing new is written.
    (Deleted seqs are never handed out again whatever is kept: `seq` is a PostgreSQL identity
    column, whose sequence only moves forward.)
    """
    newest = selectors.post_event_latest_seq()
    if not newest:
        return 0, None
    # The cut is a seq, not a time: created_at is stamped before the row gets its seq, so two
    # concurrent writes can have them in opposite orders. Deleting every seq up to the cut, lowest
    # first, means that at any moment what is stored is everything above some seq: the property
    # selectors.post_event_list_after relies on to tell a complete resume from one with pruned
    # events in it.
    cut = PostEvent.objects.filter(created_at__lt=older_than, seq__lt=newest).aggregate(cut=Max("seq"))["cut"]
    deleted = 0
    while cut is not None:
        batch = PostEvent.objects.filter(seq__lte=cut).order_by("seq").values("seq")[:batch_size]
        count, _ = PostEvent.objects.filter(seq__in=batch).delete()
        deleted += count
        if count < batch_size:
            break
    return deleted, selectors.post_event_oldest_seq()
