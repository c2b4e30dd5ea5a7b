import datetime
import enum
import uuid
from typing import NewType

import strawberry
import strawberry_django
from strawberry import auto, relay

from server.app.blog import models, selectors
from server.app.blog.notifications import Notification
from server.realtime.shapes import viewer, viewer_dependent

# PostgreSQL's bigint, the type of PostEvent.seq (a larger `after` would be a database error).
SEQ_MAX = 2**63 - 1


def parse_seq(value: object) -> int:
    """A client's `after`: an integer as JSON or GraphQL writes it (no strings, floats or booleans,
    which Python would otherwise take for numbers), in the column's range."""
    if type(value) is not int or not 0 <= value <= SEQ_MAX:
        raise ValueError(f"a Seq is an integer from 0 to {SEQ_MAX}, not {value!r}")
    return value


# GraphQL's Int is 32-bit: graphql-core refuses to serialize a seq above 2**31 - 1, which a busy
# service reaches. Seq is still a JSON number, so clients' frames and arithmetic are unchanged.
# Both schemas map the type to its scalar (server/schema.py passes SCALAR_MAP).
Seq = NewType("Seq", int)
SCALAR_MAP = {
    Seq: strawberry.scalar(
        name="Seq",
        description=(
            "An event sequence number: an integer up to 2^63 - 1, sent as a JSON number. "
            "JavaScript numbers are exact up to 2^53 (Number.MAX_SAFE_INTEGER), far beyond any "
            "sequence number this service will reach; GraphQL's Int would stop at 2^31 - 1."
        ),
        serialize=int,
        parse_value=parse_seq,
    )
}


@strawberry_django.filter_type(models.Post)
class PostFilter:
    published: auto


@strawberry_django.order_type(models.Post)
class PostOrder:
    published_at: auto
    created_at: auto
    title: auto


@strawberry_django.type(models.Post, filters=PostFilter, ordering=PostOrder)
class Post(relay.Node):
    title: auto
    content: auto
    published: auto
    published_at: auto
    created_at: auto
    updated_at: auto

    @strawberry_django.field(only=["author__username"], select_related=["author"])
    def author_name(self, root: models.Post) -> str:
        return root.author.username

    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        # Drafts are visible to their author and staff only, on every path (list, node, post).
        user = getattr(info.context.request, "user", None)
        return queryset & selectors.post_list_visible_to(user=user)


@strawberry.input
class PostCreateInput:
    title: str
    content: str = ""


@strawberry.input
class PostUpdateInput:
    id: relay.GlobalID
    title: str | None = None
    content: str | None = None


@strawberry.type
class PostNotification(relay.Node):
    """A post was published. Built from the channel-layer message: no database read."""

    id: relay.NodeID[uuid.UUID]
    title: str
    publish_at: datetime.datetime
    seq: Seq = strawberry.field(description="Sequence number; resubscribe with `after` to get the gap.")
    actor_id: strawberry.Private[int | None] = None

    @viewer_dependent(description="Whether the viewer published this post.")
    def by_viewer(self, info: strawberry.Info) -> bool:
        return _is_viewer(info, self.actor_id)

    @classmethod
    def from_notification(cls, n: Notification) -> "PostNotification":
        return cls(id=n.post_id, title=n.title, publish_at=n.published_at, seq=n.seq, actor_id=n.actor_id)


def _is_viewer(info: strawberry.Info, user_id: int | None) -> bool:
    user = viewer(info)
    return user_id is not None and user.is_authenticated and user.pk == user_id


# The model's kinds, as a GraphQL enum. PUBLISHED goes last only to keep the schema's order
# (CREATED, UPDATED, DELETED, PUBLISHED) for clients, while the model lists it first, an order
# migration 0001 has recorded.
_KINDS = sorted(models.PostEvent.Kind, key=lambda kind: kind == models.PostEvent.Kind.PUBLISHED)
DraftActivityKind = strawberry.enum(enum.Enum("DraftActivityKind", [(kind.name, kind.value) for kind in _KINDS]))


@strawberry.type
class DraftActivity:
    """Staff-only feed of everything that happens to posts, drafts included."""

    seq: Seq
    kind: DraftActivityKind
    post_id: relay.GlobalID
    title: str
    actor_id: strawberry.Private[int | None] = None

    @viewer_dependent(description="Whether the viewer made this change.")
    def by_viewer(self, info: strawberry.Info) -> bool:
        return _is_viewer(info, self.actor_id)

    @classmethod
    def from_notification(cls, n: Notification) -> "DraftActivity":
        return cls(
            seq=n.seq,
            kind=DraftActivityKind(n.kind),
            post_id=relay.GlobalID("Post", str(n.post_id)),
            title=n.title,
            actor_id=n.actor_id,
        )
