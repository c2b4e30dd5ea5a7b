import strawberry
import strawberry_django
from strawberry.types import Info
from strawberry_django.auth.mutations import resolve_login
from strawberry_django.resolvers import django_resolver
from strawberry_django.utils.requests import get_request

from server.app.authentication import throttle
from server.app.authentication.graph.types import User


@django_resolver
def login_throttled(info: Info, username: str, password: str) -> User:
    # Refused with "Too many failed login attempts; try again in N seconds" before any password
    # hashing; otherwise strawberry_django's login (its failures are counted by throttle.py).
    throttle.check(get_request(info), username)
    return resolve_login(info, username, password)


@strawberry.type
class Mutation:
    # Session login/logout: the session cookie then authenticates HTTP requests and WebSockets.
    login: User = strawberry.mutation(resolver=login_throttled)
    logout: bool = strawberry_django.auth.logout()
