"""The HTTP GraphQL surface, in-process (the stack tier covers it through nginx)."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from server.app.blog import services

pytestmark = pytest.mark.django_db


def gql(client, query, variables=None, **extra):
    response = client.post("/graphql", json.dumps({"query": query, "variables": variables or {}}),
                           content_type="application/json", **extra)
    return response


def test_csrf_is_enforced_on_posts():
    client = Client(enforce_csrf_checks=True)
    response = gql(client, "{ serverNode }")
    assert response.status_code == 403
    assert "X-CSRFToken" in response.json()["errors"][0]["message"]
    token = client.get("/csrf/").json()["csrfToken"]
    ok = gql(client, "{ serverNode }", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200 and ok.json()["data"]["serverNode"] == "pytest"


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
    blank = gql(client, 'mutation { createPost(input: {title: "  "}) { __typename '
                        "... on OperationInfo { messages { kind field message } } } }").json()
    message = blank["data"]["createPost"]["messages"][0]
    assert message["kind"] == "VALIDATION" and message["field"] == "title"


def test_deeply_nested_queries_are_refused(client):
    deep = "{ me { " + "username " * 1 + "} " + "posts { edges { node { " * 6 + "id" + " } } }" * 6 + " }"
    result = gql(client, deep).json()
    assert "depth" in result["errors"][0]["message"].lower()
