"""The HTTP GraphQL surface, in-process (the stack tier covers it through nginx)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from server.app.blog import services

pytestmark = pytest.mark.django_db

API_DIR = Path(__file__).resolve().parents[3] / "services" / "api"


def gql(client, query, variables=None, **extra):
    response = client.post(
        "/graphql", json.dumps({"query": query, "variables": variables or {}}), content_type="application/json", **extra
    )
    return response


def test_csrf_is_enforced_on_posts():
    client = Client(enforce_csrf_checks=True)
    response = gql(client, "{ serverNode }")
    assert response.status_code == 403
    assert "X-CSRFToken" in response.json()["errors"][0]["message"]
    token = client.get("/csrf/").json()["csrfToken"]
    ok = gql(client, "{ serverNode }", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200 and ok.json()["data"]["serverNode"] == "pytest"


def test_only_graphiql_gets_a_csrf_cookie_from_the_graphql_url(settings):
    """GraphiQL's page (a GET) is handed the csrftoken cookie its queries send back; a query or
    mutation (a POST, which already carried the token) is not re-issued one on every response."""
    assert settings.GRAPHIQL_ENABLED, "this tier runs with GraphiQL on (development mode)"
    client = Client(enforce_csrf_checks=True)
    page = client.get("/graphql", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"graphiql" in page.content.lower()
    assert page.cookies["csrftoken"].value
    token = client.get("/csrf/").json()["csrfToken"]
    post = gql(client, "{ serverNode }", HTTP_X_CSRFTOKEN=token)
    assert post.status_code == 200 and post.json()["data"]["serverNode"] == "pytest"
    assert "csrftoken" not in post.cookies, post.cookies.output()
    anonymous_without_token = gql(Client(enforce_csrf_checks=True), "{ serverNode }")
    assert anonymous_without_token.status_code == 403  # still checked: the view is not exempt


def test_posts_connection_hides_drafts_from_anonymous_users(client):
    author = User.objects.create_user("author", password="pw-123456789")
    services.post_create(author=author, title="draft")
    published = services.post_create(author=author, title="live")
    published.published = True
    from django.utils import timezone

    published.published_at = timezone.now()
    published.save()
    query = "{ posts(filters: {published: true}) { totalCount edges { node { title authorName } } } }"
    result = gql(client, query).json()
    assert result["data"]["posts"]["totalCount"] == 1
    assert result["data"]["posts"]["edges"][0]["node"] == {"title": "live", "authorName": "author"}
    everything = gql(client, "{ posts { totalCount } }").json()
    assert everything["data"]["posts"]["totalCount"] == 1  # the draft stays invisible


def test_create_post_needs_a_login_and_reports_a_blank_title(client):
    anonymous = gql(client, 'mutation { createPost(input: {title: "x"}) { __typename } }').json()
    assert anonymous["data"]["createPost"]["__typename"] == "OperationInfo"
    User.objects.create_user("writer", password="pw-123456789")
    client.login(username="writer", password="pw-123456789")
    blank = gql(
        client,
        'mutation { createPost(input: {title: "  "}) { __typename '
        "... on OperationInfo { messages { kind field message } } } }",
    ).json()
    message = blank["data"]["createPost"]["messages"][0]
    assert message["kind"] == "VALIDATION" and message["field"] == "title"


# The schema has no cycles: its deepest valid query, posts > edges > node > a field, has depth 3,
# inside the default limit (10). A valid query can be refused for its depth only under a lower
# limit, which the schema reads when it is built: in a fresh process.
DEEPEST = "{ posts { edges { node { title } } } }"
POST_IN_A_FRESH_PROCESS = """
import django, json; django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").post("/graphql", json.dumps({"query": %r}), content_type="application/json")
print(response.status_code, response.content.decode())
"""


def test_a_valid_query_deeper_than_the_limit_is_refused_for_its_depth_alone(client):
    assert gql(client, DEEPEST).json() == {"data": {"posts": {"edges": []}}}  # valid: only depth can refuse it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "POSTWIRE_", "GRAPHIQL_"))}
    env.update(DJANGO_SETTINGS_MODULE="server.settings", POSTWIRE_ENV="development", POSTWIRE_GRAPHQL_MAX_DEPTH="2")
    env.pop("DATABASE_URL", None)  # refused in validation, the request never reaches a database
    ran = subprocess.run(
        [sys.executable, "-c", POST_IN_A_FRESH_PROCESS % DEEPEST],
        cwd=API_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    status, body = ran.stdout.splitlines()[-1].split(" ", 1)
    errors = [e["message"] for e in json.loads(body).get("errors") or []]
    assert (status, errors) == ("200", ["'anonymous' exceeds maximum operation depth of 2"]), (
        f"a query of depth 3 was not refused (only) for its depth under POSTWIRE_GRAPHQL_MAX_DEPTH=2: {body}"
    )


def test_posts_are_ordered_and_paginated_as_asked(client):
    author = User.objects.create_user("author", password="pw-123456789")
    client.login(username="author", password="pw-123456789")
    for title in ["banana", "apple", "cherry"]:
        services.post_create(author=author, title=title)
    query = (
        "{ posts(ordering: [{title: ASC}], first: 2) { totalCount pageInfo { hasNextPage } edges { node { title } } } }"
    )
    result = gql(client, query).json()["data"]["posts"]
    assert [e["node"]["title"] for e in result["edges"]] == ["apple", "banana"]
    assert result["totalCount"] == 3 and result["pageInfo"]["hasNextPage"] is True


def test_update_and_delete_through_graphql_by_the_author_only(client):
    author = User.objects.create_user("author", password="pw-123456789")
    User.objects.create_user("other", password="pw-123456789")
    post = services.post_create(author=author, title="mine")
    from strawberry.relay import to_base64

    gid = to_base64("Post", str(post.pk))
    update = (
        'mutation($id: ID!) { updatePost(input: {id: $id, title: "renamed"}) '
        "{ __typename ... on Post { title } ... on OperationInfo { messages { kind } } } }"
    )
    delete = (
        "mutation($id: ID!) { deletePost(input: {id: $id}) { __typename ... on OperationInfo { messages { kind } } } }"
    )
    client.login(username="other", password="pw-123456789")
    assert gql(client, update, {"id": gid}).json()["data"]["updatePost"]["messages"][0]["kind"] == "PERMISSION"
    assert gql(client, delete, {"id": gid}).json()["data"]["deletePost"]["messages"][0]["kind"] == "PERMISSION"
    client.login(username="author", password="pw-123456789")
    assert gql(client, update, {"id": gid}).json()["data"]["updatePost"] == {"__typename": "Post", "title": "renamed"}
    assert gql(client, delete, {"id": gid}).json()["data"]["deletePost"]["__typename"] == "Post"
    assert not services.Post.objects.filter(pk=post.pk).exists()


def test_a_subscription_sent_over_http_is_told_to_use_a_websocket(client):
    result = gql(client, "subscription { postNotify { title } }").json()
    assert result["data"] is None
    assert "WebSocket" in result["errors"][0]["message"]
