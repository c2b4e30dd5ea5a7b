"""publishPost's hot path: what it costs in SQL, and that its one-statement publish keeps the
rules of the locked path it short-cuts (after commit, once, only by those allowed)."""

import json
import threading
import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from strawberry import relay

from server.app.blog import services
from server.app.blog.models import Post, PostEvent
from server.app.blog.permissions import publisher_permissions
from server.realtime import publish

pytestmark = pytest.mark.django_db(transaction=True)

PUBLISH = """mutation($id: ID!) { publishPost(input: {id: $id}) {
  __typename ... on Post { id published publishedAt } ... on OperationInfo { messages { kind message } } } }"""


@pytest.fixture
def sent(monkeypatch):
    """What publish.group_send was asked to send (the real send is tested in test_services.py)."""
    messages = []
    monkeypatch.setattr(publish, "group_send", lambda group, message: messages.append(message))
    return messages


def make_user(name, *, staff=True, perm=True, **fields):
    user = User.objects.create_user(name, password="pw-123456789", is_staff=staff, **fields)
    if perm:
        user.user_permissions.add(*publisher_permissions())
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


def draft(author, title="hello"):
    return Post.objects.create(author=author, title=title)


def test_publish_post_over_http_costs_three_queries_and_no_transaction(sent):
    """The session, its user, and one statement that checks the permissions, publishes the draft
    and writes its event: no BEGIN/COMMIT, no SELECT ... FOR UPDATE, no permission queries."""
    publisher = make_user("publisher")
    post = draft(publisher)
    client = Client()
    client.force_login(publisher, backend="django.contrib.auth.backends.ModelBackend")
    gid = relay.to_base64("Post", post.pk)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/graphql", json.dumps({"query": PUBLISH, "variables": {"id": gid}}), content_type="application/json"
        )
    assert response.json()["data"]["publishPost"]["__typename"] == "Post", response.json()
    # CONN_HEALTH_CHECKS pings a reused connection once per request: not the publish's doing.
    statements = [q["sql"] for q in queries.captured_queries if q["sql"] != "SELECT 1"]
    assert len(statements) == 3, "\n".join(statements)
    assert '"django_session"' in statements[0]
    assert '"auth_user"' in statements[1]
    assert "WITH published AS" in statements[2] and "FOR UPDATE" not in statements[2]
    post.refresh_from_db()
    assert post.published and post.published_at is not None
    event = PostEvent.objects.get(kind="published")
    assert [m["seq"] for m in sent] == [event.seq]
    assert sent[0]["published_at"] == post.published_at.isoformat() == event.published_at.isoformat()
    assert event.actor_id == publisher.pk and event.post_id == post.pk and event.title == post.title


def test_the_broadcast_waits_for_the_callers_commit(sent):
    publisher = make_user("publisher")
    post = draft(publisher)
    with transaction.atomic():
        published = services.post_publish(post_id=post.pk, user=publisher)
        assert published.published and sent == []
    assert [m["kind"] for m in sent] == ["published"]


def test_a_rolled_back_publish_leaves_the_draft_and_sends_nothing(sent):
    publisher = make_user("publisher")
    post = draft(publisher)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.post_publish(post_id=post.pk, user=publisher)
        raise RuntimeError
    assert sent == [] and not PostEvent.objects.exists()
    assert Post.objects.get(pk=post.pk).published is False


@pytest.mark.parametrize("how", ["group", "superuser"])
def test_permission_through_a_group_or_superuser_status_publishes(sent, how):
    if how == "group":
        publisher = make_user("publisher", perm=False)
        group = Group.objects.create(name="publishers")
        group.permissions.add(*publisher_permissions())
        publisher.groups.add(group)
        publisher = User.objects.get(pk=publisher.pk)
    else:
        publisher = make_user("publisher", perm=False, is_superuser=True)
    post = services.post_publish(post_id=draft(publisher).pk, user=publisher)
    assert post.published and len(sent) == 1


@pytest.mark.parametrize("who", ["staff with one of the two permissions", "inactive staff with both"])
def test_not_quite_a_publisher_is_refused(sent, who):
    if who.startswith("inactive"):
        user = make_user("user", is_active=False)
    else:
        user = make_user("user", perm=False)
        user.user_permissions.add(*publisher_permissions().filter(codename="publish_post"))
        user = User.objects.get(pk=user.pk)
    post = draft(user)
    with pytest.raises(PermissionDenied):
        services.post_publish(post_id=post.pk, user=user)
    assert sent == [] and Post.objects.get(pk=post.pk).published is False


def test_a_missing_post_is_still_does_not_exist(sent):
    with pytest.raises(Post.DoesNotExist):
        services.post_publish(post_id=uuid.uuid4(), user=make_user("publisher"))
    assert sent == []


def test_concurrent_publishes_of_one_draft_publish_it_once(sent):
    publisher = make_user("publisher")
    post = draft(publisher)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def publish_it():
        try:
            barrier.wait()
            results.append(services.post_publish(post_id=post.pk, user=publisher))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=publish_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.published_at for r in results}) == 1 and all(r.published for r in results)
    assert PostEvent.objects.filter(kind="published").count() == 1
    assert len(sent) == 1
