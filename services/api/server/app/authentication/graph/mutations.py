import strawberry
import strawberry_django

from server.app.authentication.graph.types import User


@strawberry.type
class Mutation:
    # Session login/logout: the session cookie then authenticates HTTP requests and WebSockets.
    login: User = strawberry_django.auth.login()
    logout: bool = strawberry_django.auth.logout()
