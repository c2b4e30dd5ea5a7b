"""A broadcast committed during a WSGI request is scheduled once its response has been written
(closed), still only after COMMIT, in commit order, and never dropped; outside a request it
leaves at commit, as before (server/realtime/after_response.py)."""

import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory
from strawberry import relay

from server.app.blog import services
from server.app.blog.models import Post, PostEvent
from server.app.blog.permissions import publisher_permissions
from server.realtime import after_response, metrics, publish

pytestmark = pytest.mark.django_db(transaction=True)

HERE = __name__
PUBLISH = """mutation($id: ID!) { publishPost(input: {id: $id}) { __typename } }"""
PUBLISH_TWO = """mutation($a: ID!, $b: ID!) {
  a: publishPost(input: {id: $a}) { __typename } b: publishPost(input: {id: $b}) { __typename } }"""

# (group, message) of every send handed to the publisher loop (the `scheduled` fixture), and what
# the request's middleware chain saw as it returned: the number of sends scheduled and of
# "published" events committed by then (Probe, the outermost middleware in these tests).
_scheduled = []
probed = []


@pytest.fixture
def scheduled(monkeypatch):
    """Records each send as publish.group_send hands it to the publisher loop; the real
    group_send runs, and so does the send itself, to the session's Redis."""
    real_send = publish._send

    def recording_send(layer, group, message):
        _scheduled.append((group, message))
        return real_send(layer, group, message)

    monkeypatch.setattr(publish, "_send", recording_send)
    _scheduled.clear()
    probed.clear()
    yield _scheduled
    publish.flush()  # nothing of this test's left in flight for the next one's listeners


class Probe:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        published = PostEvent.objects.filter(kind="published").count()
        probed.append({"scheduled": len(_scheduled), "published": published})
        return response


class RaiseAfterTheView:
    """The view has committed; then something goes wrong (Django turns it into a 500)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        self.get_response(request)
        raise RuntimeError("after the commit")


class _Rollback(Exception):
    pass


class RollBackTheRequest:
    """The whole request in one transaction that is then rolled back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            with transaction.atomic():
                self.get_response(request)
                raise _Rollback
        except _Rollback:
            return HttpResponse(status=409)


@pytest.fixture
def middleware(settings, scheduled):
    """Probe outermost, then `extra`, then the product's chain."""
    product = list(settings.MIDDLEWARE)

    def use(*extra):
        settings.MIDDLEWARE = [f"{HERE}.Probe", *(f"{HERE}.{name}" for name in extra), *product]

    use()
    return use


def make_publisher():
    user = User.objects.create_user("publisher", password="pw-123456789", is_staff=True)
    user.user_permissions.add(*publisher_permissions())
    return User.objects.get(pk=user.pk)


def logged_in(user, **kwargs):
    client = Client(**kwargs)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def gid(post):
    return relay.to_base64("Post", post.pk)


def graphql(client, query, **variables):
    return client.post(
        "/graphql", json.dumps({"query": query, "variables": variables}), content_type="application/json"
    )


def sent_counter():
    return metrics.BROADCASTS.labels(outcome="sent")._value.get()


def test_over_http_the_send_is_scheduled_once_the_response_is_closed(middleware, scheduled):
    publisher = make_publisher()
    post = Post.objects.create(author=publisher, title="hello")
    client = logged_in(publisher)
    before = sent_counter()
    response = graphql(client, PUBLISH, id=gid(post))
    assert response.json() == {"data": {"publishPost": {"__typename": "Post"}}}
    # The response was complete, and the event committed, and still nothing had been scheduled.
    assert probed == [{"scheduled": 0, "published": 1}]
    # The test Client closes the response, as gunicorn does once it has written it.
    event = PostEvent.objects.get(kind="published")
    assert [(group, m["seq"], m["kind"], m["title"]) for group, m in scheduled] == [
        (settings.POSTS_CHANNEL, event.seq, "published", "hello")
    ]
    publish.flush()
    assert sent_counter() == before + 1  # the send itself went through, and was counted


def test_two_events_in_one_request_leave_in_commit_order(middleware, scheduled):
    publisher = make_publisher()
    first = Post.objects.create(author=publisher, title="first")
    second = Post.objects.create(author=publisher, title="second")
    response = graphql(logged_in(publisher), PUBLISH_TWO, a=gid(first), b=gid(second))
    assert response.json()["data"] == {"a": {"__typename": "Post"}, "b": {"__typename": "Post"}}
    assert probed[0]["scheduled"] == 0
    events = list(PostEvent.objects.filter(kind="published").order_by("seq"))
    assert [e.post_id for e in events] == [first.pk, second.pk]
    assert [m["seq"] for _, m in scheduled] == [e.seq for e in events]


def test_a_rolled_back_request_sends_nothing(middleware, scheduled):
    middleware("RollBackTheRequest")
    publisher = make_publisher()
    post = Post.objects.create(author=publisher, title="hello")
    response = graphql(logged_in(publisher), PUBLISH, id=gid(post))
    assert response.status_code == 409
    assert scheduled == [] and not PostEvent.objects.filter(kind="published").exists()
    assert Post.objects.get(pk=post.pk).published is False


def test_an_error_after_the_commit_still_sends_once_the_error_response_is_closed(middleware, scheduled):
    middleware("RaiseAfterTheView")  # outside the product's middleware: its 500 is a new response
    publisher = make_publisher()
    post = Post.objects.create(author=publisher, title="hello")
    response = graphql(logged_in(publisher, raise_request_exception=False), PUBLISH, id=gid(post))
    assert response.status_code == 500
    assert probed == [{"scheduled": 0, "published": 1}]
    assert [m["seq"] for _, m in scheduled] == [PostEvent.objects.get(kind="published").seq]


def test_a_response_never_closed_is_sent_when_the_threads_next_request_starts(middleware, scheduled):
    publisher = make_publisher()
    first = Post.objects.create(author=publisher, title="first")
    second = Post.objects.create(author=publisher, title="second")

    def view(request):
        services.post_publish(post_id=first.pk, user=publisher)
        return HttpResponse()

    # A request whose response is never closed (request_finished never fires).
    after_response.AfterResponseMiddleware(view)(RequestFactory().post("/graphql"))
    assert scheduled == []
    graphql(logged_in(publisher), PUBLISH, id=gid(second))
    # Sent as the next request started, not held with (nor dropped by) that request's own...
    assert probed == [{"scheduled": 1, "published": 2}]
    # ...which leaves after it, once closed.
    events = PostEvent.objects.filter(kind="published").order_by("seq")
    assert [m["seq"] for _, m in scheduled] == [e.seq for e in events]
    assert [e.post_id for e in events] == [first.pk, second.pk]


def test_another_thread_committing_during_a_request_is_not_held_by_it(scheduled):
    """gthread serves a request per thread: one request's hold is its own thread's only."""
    publisher = make_publisher()
    mine = Post.objects.create(author=publisher, title="mine")
    other = Post.objects.create(author=publisher, title="other")
    seen_during_the_request = []

    def publish_elsewhere():
        try:
            services.post_publish(post_id=other.pk, user=publisher)
        finally:
            from django.db import connection

            connection.close()

    def view(request):
        services.post_publish(post_id=mine.pk, user=publisher)
        thread = threading.Thread(target=publish_elsewhere)
        thread.start()
        thread.join()
        seen_during_the_request.extend(m["title"] for _, m in scheduled)
        return HttpResponse()

    response = after_response.AfterResponseMiddleware(view)(RequestFactory().post("/graphql"))
    assert seen_during_the_request == ["other"]
    response.close()
    assert [m["title"] for _, m in scheduled] == ["other", "mine"]


def test_outside_a_request_the_send_leaves_at_commit(scheduled):
    publisher = make_publisher()
    post = Post.objects.create(author=publisher, title="hello")
    assert Client().get("/csrf/").status_code == 200  # a request on this thread came and went
    with transaction.atomic():
        services.post_publish(post_id=post.pk, user=publisher)
        assert scheduled == []  # after COMMIT only
    assert [m["kind"] for _, m in scheduled] == ["published"]


async def test_the_asgi_side_sends_at_commit_as_before(middleware, scheduled):
    publisher = await sync_to_async(make_publisher)()
    post = await Post.objects.acreate(author=publisher, title="hello")
    client = AsyncClient()
    await client.aforce_login(publisher, backend="django.contrib.auth.backends.ModelBackend")
    body = json.dumps({"query": PUBLISH, "variables": {"id": gid(post)}})
    response = await client.post("/graphql", body, content_type="application/json")
    assert response.json() == {"data": {"publishPost": {"__typename": "Post"}}}
    assert probed == [{"scheduled": 1, "published": 1}]  # scheduled at commit, before the response
