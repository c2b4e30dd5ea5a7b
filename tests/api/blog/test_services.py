"""Publishing: after commit only, once, and only by those allowed."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db import transaction

from server.app.blog import selectors, services
from server.app.blog.models import Post, PostEvent
from server.app.blog.permissions import publisher_permissions

pytestmark = pytest.mark.django_db(transaction=True)


def make_user(name, *, staff=False, perm=False):
    user = User.objects.create_user(name, password="pw-123456789")
    user.is_staff = staff
    user.save()
    if perm:
        user.user_permissions.add(*publisher_permissions())
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


@sync_to_async
def draft_by_publisher(title="hello"):
    publisher = make_user(f"pub-{title}", staff=True, perm=True)
    return services.post_create(author=publisher, title=title), publisher


async def test_publish_sends_one_message_after_commit(group_listener):
    post, publisher = await draft_by_publisher()
    await group_listener.receive()  # the "created" event
    published = await sync_to_async(services.post_publish)(post_id=post.pk, user=publisher)

    message = await group_listener.receive()
    assert message["kind"] == "published"
    assert message["post_id"] == str(post.pk)
    assert message["title"] == "hello"
    assert message["published_at"] == published.published_at.isoformat()
    event = await PostEvent.objects.aget(seq=message["seq"])
    assert event.kind == "published"
    await group_listener.assert_silent()


async def test_rolled_back_publish_notifies_no_one(group_listener):
    post, publisher = await draft_by_publisher()
    await group_listener.receive()

    @sync_to_async
    def publish_then_fail():
        with transaction.atomic():
            services.post_publish(post_id=post.pk, user=publisher)
            raise RuntimeError("something later in the request failed")

    with pytest.raises(RuntimeError):
        await publish_then_fail()
    await group_listener.assert_silent()
    refreshed = await Post.objects.aget(pk=post.pk)
    assert refreshed.published is False and refreshed.published_at is None
    assert not await PostEvent.objects.filter(kind="published").aexists()


async def test_publishing_twice_notifies_once(group_listener):
    post, publisher = await draft_by_publisher()
    await group_listener.receive()
    first = await sync_to_async(services.post_publish)(post_id=post.pk, user=publisher)
    await group_listener.receive()
    second = await sync_to_async(services.post_publish)(post_id=post.pk, user=publisher)
    assert second.published_at == first.published_at
    await group_listener.assert_silent()
    assert await PostEvent.objects.filter(kind="published").acount() == 1


@pytest.mark.parametrize("who", ["anonymous", "not staff", "staff without permission"])
async def test_unauthorised_publish_is_refused_and_silent(group_listener, who):
    post, _ = await draft_by_publisher()
    await group_listener.receive()
    user = {
        "anonymous": lambda: AnonymousUser(),
        "not staff": lambda: make_user("plain", perm=True),
        "staff without permission": lambda: make_user("staffonly", staff=True),
    }[who]
    with pytest.raises(PermissionDenied):
        await sync_to_async(lambda: services.post_publish(post_id=post.pk, user=user()))()
    await group_listener.assert_silent()
    assert (await Post.objects.aget(pk=post.pk)).published is False


def test_drafts_are_visible_to_their_author_and_staff_only():
    author = make_user("author")
    other = make_user("other")
    staff = make_user("staff", staff=True)
    draft = services.post_create(author=author, title="draft")
    assert list(selectors.post_list_visible_to(user=AnonymousUser())) == []
    assert list(selectors.post_list_visible_to(user=other)) == []
    assert list(selectors.post_list_visible_to(user=author)) == [draft]
    assert list(selectors.post_list_visible_to(user=staff)) == [draft]


def test_only_the_author_or_staff_may_edit_or_delete():
    author = make_user("author")
    other = make_user("other")
    post = services.post_create(author=author, title="mine")
    with pytest.raises(PermissionDenied):
        services.post_update(post_id=post.pk, user=other, title="theirs")
    with pytest.raises(PermissionDenied):
        services.post_delete(post_id=post.pk, user=other)
    assert Post.objects.get(pk=post.pk).title == "mine"
    services.post_delete(post_id=post.pk, user=author)
    assert not Post.objects.filter(pk=post.pk).exists()
    assert list(PostEvent.objects.values_list("kind", flat=True)) == ["created", "deleted"]
