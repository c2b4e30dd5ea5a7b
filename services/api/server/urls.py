from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse
from django.middleware.csrf import get_token
from django.urls import path, re_path
from django.views.decorators.csrf import ensure_csrf_cookie
from strawberry.django.views import GraphQLView

from server import json_input
from server.schema import schema


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: GraphQL clients get a JSON error that says what to do, not an HTML page."""
    message = (
        f"CSRF verification failed ({reason}). GET /csrf/ for a token and send it back as the "
        "X-CSRFToken header, with the csrftoken cookie."
    )
    return JsonResponse({"errors": [{"message": message}]}, status=403)


@ensure_csrf_cookie
def csrf(request):
    """Hands a client the CSRF token (and cookie) to send as X-CSRFToken with POSTs to /graphql."""
    return JsonResponse({"csrfToken": get_token(request)})


class PostwireGraphQLView(GraphQLView):
    def decode_json(self, data):
        return json_input.loads(data)  # a deeply nested body is a 400, not a 500


_graphql = PostwireGraphQLView.as_view(schema=schema, graphql_ide="graphiql" if settings.GRAPHIQL_ENABLED else None)
_graphql_with_cookie = ensure_csrf_cookie(_graphql)


def graphql_view(request, *args, **kwargs):
    """GraphiQL (a GET) reads the csrftoken cookie: ensure_csrf_cookie makes sure it has one. A POST
    already carries the token (CsrfViewMiddleware checked it), and ensure_csrf_cookie would mint a
    new masked token (32 urandom calls) and send Set-Cookie on every query and mutation."""
    view = _graphql_with_cookie if request.method in ("GET", "HEAD") else _graphql
    return view(request, *args, **kwargs)


urlpatterns = [
    re_path(r"^graphql/?$", graphql_view, name="graphql"),
    path("csrf/", csrf, name="csrf"),
    path("admin/", admin.site.urls),
]
