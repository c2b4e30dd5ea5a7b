import datetime
import enum
import uuid

import strawberry
import strawberry_django
from strawberry import auto, relay

from server.app.blog import models, services
from server.app.blog.notifications import Notification
from server.realtime.shared import viewer, viewer_dependent


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
        return queryset & services.visible_posts(user)


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
    seq: int = strawberry.field(description="Sequence number; resubscribe with `after` to get the gap.")
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


@strawberry.enum
class DraftActivityKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    PUBLISHED = "published"


@strawberry.type
class DraftActivity:
    """Staff-only feed of everything that happens to posts, drafts included."""

    seq: int
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
