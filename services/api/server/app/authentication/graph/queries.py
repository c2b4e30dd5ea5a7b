import strawberry
from strawberry.types import Info

from server.app.authentication.graph.types import User


@strawberry.type
class Query:
    @strawberry.field(description="The logged-in user, or null.")
    def me(self, info: Info) -> User | None:
        user = info.context.request.user
        return user if user.is_authenticated else None
