"""SQL queries per list field of the HTTP GraphQL schema: as many for 20 rows as for 2.

Saleor benchmarks its list queries with `count_queries`; here every root field of `Query` whose
result holds a list is requested with every field its items have, by every kind of viewer
(their visibility rules differ), with 2 rows and then with 20, and the two counts must be equal.
A resolver that loads something per row (an N+1) makes them differ. A new list field fails
`test_every_list_field_has_a_query_count_case` until it gets a case here.
"""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from graphql import GraphQLList, GraphQLObjectType, get_named_type, get_nullable_type

from server.app.blog.models import Post
from server.schema import schema
from tests.support.queries import count_all_queries

pytestmark = pytest.mark.django_db

POST_FIELDS = "id title content published publishedAt createdAt updatedAt authorName"

# Per list field: documents that request it (every field of its items, and its arguments), and
# the number of items the viewer sees in the result as a function of the rows stored.
CASES = {
    "posts": [
        "{ posts { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } "
        f"edges {{ cursor node {{ {POST_FIELDS} }} }} }} }}",
        "{ posts(filters: {published: true}, ordering: [{title: ASC}], first: 50) "
        f"{{ totalCount edges {{ node {{ {POST_FIELDS} }} }} }} }}",
    ],
}

VIEWERS = ["anonymous", "author", "staff"]


def lists_under(graphql_type, seen: set) -> bool:
    """Whether a value of this type can hold a list (at any depth)."""
    nullable = get_nullable_type(graphql_type)
    if isinstance(nullable, GraphQLList):
        return True
    named = get_named_type(nullable)
    if not isinstance(named, GraphQLObjectType) or named.name in seen:
        return False
    seen.add(named.name)
    return any(lists_under(field.type, seen) for field in named.fields.values())


def test_every_list_field_has_a_query_count_case():
    query_type = schema._schema.query_type
    list_fields = {name for name, field in query_type.fields.items() if lists_under(field.type, set())}
    assert list_fields == set(CASES), "give every list field of Query a case in CASES"


def add_posts(count: int, start: int, viewer: User | None) -> None:
    """`count` more posts, each by its own author, alternately published and draft; the viewer
    (when logged in) writes some drafts too, which only they (and staff) may see."""
    authors = User.objects.bulk_create(User(username=f"author-{start + i}") for i in range(count))
    now = timezone.now()
    posts = [
        Post(
            title=f"post {start + i}",
            content="body",
            author=author,
            published=i % 2 == 0,
            published_at=now if i % 2 == 0 else None,
        )
        for i, author in enumerate(authors)
    ]
    if viewer is not None:
        posts.append(Post(title=f"own draft {start}", author=viewer))
    Post.objects.bulk_create(posts)


def visible_count(viewer: str) -> int:
    if viewer == "staff":
        return Post.objects.count()
    published = Post.objects.filter(published=True).count()
    if viewer == "author":
        return published + Post.objects.filter(published=False, author__username="viewer").count()
    return published


def run(client: Client, document: str) -> tuple[dict, int]:
    with count_all_queries() as queries:
        response = client.post("/graphql", json.dumps({"query": document}), content_type="application/json")
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    # CONN_HEALTH_CHECKS pings a reused connection once per request: not the resolvers' doing.
    return body["data"], len([sql for sql in queries if sql != "SELECT 1"])


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize(("field", "document"), [(f, d) for f, docs in CASES.items() for d in docs])
def test_list_queries_cost_the_same_for_2_rows_as_for_20(field, document, viewer):
    client = Client()
    user = None
    if viewer != "anonymous":
        user = User.objects.create(username="viewer", is_staff=viewer == "staff")
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    counts = {}
    for rows, start in ((2, 0), (20, 2)):
        add_posts(rows - Post.objects.filter(author__username__startswith="author-").count(), start, user)
        data, counts[rows] = run(client, document)
        result = data[field]
        items = result["edges"]
        expected = (
            visible_count(viewer) if "published: true" not in document else Post.objects.filter(published=True).count()
        )
        assert len(items) == expected > 0  # the rows were really read, not an empty page
        if "totalCount" in result:
            assert result["totalCount"] == expected
        assert all(edge["node"]["authorName"] for edge in items)
    assert counts[2] == counts[20], f"{counts[2]} queries for 2 rows, {counts[20]} for 20: a query per row"
    # And few: one query for the page with its total count (plus the session and its user for a
    # logged-in viewer).
    assert counts[20] == (1 if viewer == "anonymous" else 3), counts
