import strawberry
import strawberry_django
from strawberry_django.relay import DjangoListConnection

from server.app.blog.graph.types import Post


@strawberry.type
class Query:
    posts: DjangoListConnection[Post] = strawberry_django.connection(
        description="Posts you may see (published, plus your drafts; staff see all), newest first."
    )
    post: Post | None = strawberry_django.node(description="One post by its relay id.")
