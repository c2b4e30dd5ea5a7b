"""The per-process hub against real Redis and PostgreSQL."""

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from devstack.backing import Redis
from server.app.blog import notifications
from server.app.blog.models import PostEvent
from server.app.blog.notifications import Notification
from server.realtime.hub import EventsNotRetained, Hub, SubscriberTooSlow
from tests.support.queries import count_all_queries

pytestmark = pytest.mark.django_db(transaction=True)

GROUP = "hub-test"


def make_hub(*, layer="default", rejoin=3600.0, catchup=3600.0, check=3600.0, queue=100) -> Hub:
    return Hub(
        group=GROUP,
        decode=Notification.from_message,
        latest_seq=notifications.latest_seq,
        events_after=notifications.events_after,
        rejoin_seconds=rejoin,
        catchup_seconds=catchup,
        check_seconds=check,
        queue_size=queue,
        layer_alias=layer,
    )


@sync_to_async
def stored_event(title="t", kind="published") -> Notification:
    author, _ = User.objects.get_or_create(username="hub-author")
    import uuid

    from django.utils import timezone

    row = PostEvent.objects.create(
        kind=kind, post_id=uuid.uuid4(), title=title, published_at=timezone.now(), actor=author
    )
    return Notification.from_event(row)


class Reader:
    """Consumes a hub stream in a task, collecting what arrives."""

    def __init__(self, hub, kinds=("published",), after=None):
        self.got: list[Notification] = []
        self.error: BaseException | None = None
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run(hub.stream(kinds, after=after)))

    async def _run(self, stream):
        try:
            async for event in stream:
                self.got.append(event)
                self.arrived.set()
        except Exception as exc:
            self.error = exc
            self.arrived.set()

    async def wait_for(self, count, timeout=10.0):
        async def enough():
            while len(self.got) < count and self.error is None:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)

    async def stop(self):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def running(hub: Hub, readers: int = 1, **kwargs) -> list[Reader]:
    started = [Reader(hub, **kwargs) for _ in range(readers)]
    await asyncio.wait_for(hub.connected.wait(), 10)
    return started


async def send(layer_alias: str, event: Notification):
    from channels.layers import get_channel_layer

    await get_channel_layer(layer_alias).group_send(GROUP, event.to_message())


async def test_one_message_reaches_every_local_subscriber_with_no_queries():
    # The hub starts from the latest stored seq. Transactional tests empty the table but not its
    # sequence, so store one event first: the next seq is then contiguous, not a gap that the
    # hub would (rightly) fill with one catch-up query.
    await stored_event("baseline")
    hub = make_hub()
    readers = await running(hub, readers=50)
    try:
        event = await stored_event("fan-out")
        with count_all_queries() as queries:
            await send("default", event)
            await asyncio.gather(*(r.wait_for(1) for r in readers))
        assert [r.got for r in readers] == [[event]] * 50
        # O(1) per publish, not O(subscribers): delivery touched the database zero times.
        assert queries == []
    finally:
        await asyncio.gather(*(r.stop() for r in readers))
        await hub.stop()


async def test_subscribers_only_get_the_kinds_they_asked_for():
    hub = make_hub()
    published, everything = Reader(hub, kinds=("published",)), Reader(hub, kinds=("created", "published"))
    await asyncio.wait_for(hub.connected.wait(), 10)
    try:
        created = await stored_event("draft", kind="created")
        live = await stored_event("live")
        await send("default", created)
        await send("default", live)
        await everything.wait_for(2)
        await published.wait_for(1)
        assert published.got == [live]
        assert everything.got == [created, live]
    finally:
        await published.stop()
        await everything.stop()
        await hub.stop()


async def test_the_same_event_twice_is_delivered_once():
    hub = make_hub()
    (reader,) = await running(hub)
    try:
        first, second = await stored_event("a"), await stored_event("b")
        await send("default", first)
        await send("default", first)
        await send("default", second)
        await reader.wait_for(2)
        await asyncio.sleep(0.3)
        assert reader.got == [first, second]
    finally:
        await reader.stop()
        await hub.stop()


async def test_a_lost_message_is_filled_from_the_database_in_order():
    await stored_event("baseline")
    hub = make_hub()
    (reader,) = await running(hub)
    try:
        lost, live = await stored_event("never broadcast"), await stored_event("live")
        await send("default", live)  # seq jumps by two: the hub asks PostgreSQL for the hole
        await reader.wait_for(2)
        assert reader.got == [lost, live]
    finally:
        await reader.stop()
        await hub.stop()


async def test_a_publish_that_commits_late_is_still_delivered():
    """Two publishes commit in the other order than their seqs: the later seq arrives first, the
    hole is not in the database yet; the earlier seq, arriving afterwards, must not be dropped."""
    await stored_event("baseline")
    hub = make_hub()
    (reader,) = await running(hub)
    try:
        early, late = await stored_event("first seq"), await stored_event("second seq")
        await sync_to_async(PostEvent.objects.filter(seq=early.seq).delete)()  # "not committed yet"
        await send("default", late)
        await reader.wait_for(1)
        await send("default", early)  # its commit lands now
        await reader.wait_for(2)
        assert reader.got == [late, early]
    finally:
        await reader.stop()
        await hub.stop()


async def test_after_replays_exactly_the_gap_then_goes_live():
    seen = await stored_event("seen")
    missed = [await stored_event(f"missed {i}") for i in range(3)]
    hub = make_hub()
    (reader,) = await running(hub, after=seen.seq)
    try:
        await reader.wait_for(3)
        live = await stored_event("live")
        await send("default", live)
        await reader.wait_for(4)
        assert reader.got == [*missed, live]
    finally:
        await reader.stop()
        await hub.stop()


async def test_a_stalled_subscriber_is_cut_off_not_buffered_forever():
    await stored_event("baseline")  # contiguous seqs from here: no catch-up reorders the test
    hub = make_hub(queue=2)
    stream = hub.stream({"published"})
    first = asyncio.create_task(stream.__anext__())
    await asyncio.wait_for(hub.connected.wait(), 10)
    try:
        events = [await stored_event(str(i)) for i in range(5)]
        for event in events:
            await send("default", event)
        assert await first == events[0]
        await asyncio.sleep(0.5)  # the rest pile up while nobody reads
        with pytest.raises(SubscriberTooSlow):
            while True:
                await stream.__anext__()
    finally:
        await stream.aclose()
        await hub.stop()


def _layer(url: str, **config) -> dict:
    """The production layer configuration, pointed at another Redis or with other options."""
    from django.conf import settings

    host = {**settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0], "address": url}
    return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host], **config}}


async def test_hub_rejoins_before_the_layer_expires_its_membership(settings):
    """channels_redis drops group members after group_expiry. A hub that never re-joins goes deaf;
    one that re-joins keeps hearing."""
    url = settings.REDIS_URL
    settings.CHANNEL_LAYERS = {"default": settings.CHANNEL_LAYERS["default"], "short": _layer(url, group_expiry=2)}
    keeper = make_hub(layer="short", rejoin=0.5, check=0.5)
    forgetful = make_hub(layer="short", rejoin=3600)
    kept, forgot = Reader(keeper), Reader(forgetful)
    await asyncio.wait_for(keeper.connected.wait(), 10)
    await asyncio.wait_for(forgetful.connected.wait(), 10)
    try:
        await asyncio.sleep(4)  # twice the expiry
        event = await stored_event("after expiry")
        await send("short", event)
        await kept.wait_for(1)
        await asyncio.sleep(1)
        assert kept.got == [event]
        assert forgot.got == []  # proves the expiry is real (catch-up is off in both)
    finally:
        for reader in (kept, forgot):
            await reader.stop()
        await keeper.stop()
        await forgetful.stop()


async def test_hub_survives_a_redis_restart_and_recovers_what_it_missed(settings, tmp_path):
    redis = Redis(tmp_path).start()
    settings.CHANNEL_LAYERS = {"default": settings.CHANNEL_LAYERS["default"], "own": _layer(redis.url)}
    hub = make_hub(layer="own", check=0.5)  # periodic catch-up stays off: recovery is the check's
    (reader,) = await running(hub)
    try:
        before = await stored_event("before")
        await send("own", before)
        await reader.wait_for(1)

        await asyncio.to_thread(redis.stop)  # all group membership is gone with it
        during = await stored_event("published while redis was down")  # committed; broadcast lost
        await asyncio.to_thread(redis.start)
        await reader.wait_for(2, timeout=30)  # recovered from PostgreSQL after the reconnect
        assert reader.got == [before, during]
        assert reader.error is None

        after = await stored_event("after")
        await send("own", after)  # reaches the hub only if it re-joined the group
        await reader.wait_for(3, timeout=10)
        assert reader.got == [before, during, after]
    finally:
        await reader.stop()
        await hub.stop()
        redis.stop()


@sync_to_async
def stored_events(count: int, title: str = "many") -> list[Notification]:
    import uuid

    from django.utils import timezone

    author, _ = User.objects.get_or_create(username="hub-author")
    rows = PostEvent.objects.bulk_create(
        PostEvent(
            kind="published", post_id=uuid.uuid4(), title=f"{title} {i}", published_at=timezone.now(), actor=author
        )
        for i in range(count)
    )
    return [Notification.from_event(row) for row in rows]


async def test_a_resume_longer_than_one_page_is_replayed_whole_and_in_order():
    """`after` used to replay at most 1,000 events and then go live, silently skipping the rest."""
    before = await stored_event("before the gap")
    missed = await stored_events(Hub.REPLAY_PAGE * 2 + 5)
    hub = make_hub()
    reader = Reader(hub, after=before.seq)
    try:
        await reader.wait_for(len(missed), timeout=60)
        assert [e.seq for e in reader.got] == [e.seq for e in missed]
        live = await stored_event("live after the replay")
        await send("default", live)
        await reader.wait_for(len(missed) + 1)
        assert reader.got[-1] == live
    finally:
        await reader.stop()
        await hub.stop()


REFETCH = (
    "Events after seq {after} are no longer retained (oldest kept: {oldest}): refetch the posts, "
    "then subscribe without after"
)


@sync_to_async
def prune_through(seq: int) -> None:
    """What prune_events leaves behind: everything up to `seq` deleted."""
    PostEvent.objects.filter(seq__lte=seq).delete()


def subscription(hub: Hub, path: str, after: int):
    """A subscription on either path; for the direct one, stubs enough of an operation and a
    shape for the hub to take it (the refusal comes before anything would be written)."""
    from types import SimpleNamespace

    from server.realtime.fanout import DirectSubscription, QueuedSubscription

    counter = SimpleNamespace(inc=lambda amount=1: None)
    kinds = frozenset({"published"})
    if path == "plain":
        return QueuedSubscription(hub.fanout, kinds, after, counter, 100)
    operation = SimpleNamespace(id="1", protocol="graphql-transport-ws", consumer=SimpleNamespace(encode_json=repr))
    return DirectSubscription(
        hub.fanout,
        kinds,
        after,
        counter,
        operation=operation,
        shape_key="stub",
        make_shape=lambda: SimpleNamespace(kinds=kinds, subscribers={}, delivered=None, key=None),
        writer=None,
    )


async def replayed(hub: Hub, path: str, after: int):
    hub._ensure_running()
    async with subscription(hub, path, after) as sub:
        async for event in sub.replay():
            yield event


@pytest.mark.parametrize("path", ["plain", "direct"])
async def test_a_resume_from_before_the_retained_events_is_refused_on_both_paths(path):
    seen = await stored_event("seen by the client")
    pruned = await stored_event("pruned while it was away")
    kept = await stored_event("kept")
    await prune_through(pruned.seq)
    hub = make_hub()
    try:
        with pytest.raises(EventsNotRetained) as refused:
            async for _ in replayed(hub, path, after=seen.seq):
                pytest.fail("nothing may be replayed from a resume with a hole in it")
        assert str(refused.value) == REFETCH.format(after=seen.seq, oldest=kept.seq)
        # Resuming from the last pruned event (or later) is still exact.
        stream = replayed(hub, path, after=pruned.seq)
        assert await stream.__anext__() == kept
        await stream.aclose()
    finally:
        await hub.stop()


async def test_the_hub_catches_up_past_pruned_events_with_a_warning(caplog):
    baseline = await stored_event("baseline")
    hub = make_hub()
    (reader,) = await running(hub)
    try:
        lost = await stored_event("pruned before the hub caught up")
        survivor, live = await stored_event("still stored"), await stored_event("live")
        await prune_through(lost.seq)
        await send("default", live)  # a gap after baseline: the hub catches up, and finds a hole
        await reader.wait_for(2)
        assert reader.got == [survivor, live] and reader.error is None
        assert f"events after seq {baseline.seq} were pruned" in caplog.text
        later = await stored_event("later")
        await send("default", later)
        await reader.wait_for(3)
        assert reader.got[-1] == later  # still connected, still delivering
    finally:
        await reader.stop()
        await hub.stop()


async def test_a_stopped_hub_leaves_the_group_at_once():
    """A drained node's hub leaves the group, so publishes stop writing to a channel nobody
    reads (channels_redis would otherwise keep it until group_expiry)."""
    from channels.layers import get_channel_layer

    from server.realtime import hub as hub_module

    hub = make_hub()
    reader = Reader(hub)
    await asyncio.wait_for(hub.connected.wait(), 10)
    layer = get_channel_layer()
    members = layer.connection(layer.consistent_hash(GROUP))
    key = layer._group_key(GROUP)
    assert await members.zscore(key, hub.channel_name) is not None
    assert hub in hub_module.RUNNING
    await reader.stop()
    await hub.stop()
    assert await members.zscore(key, hub.channel_name) is None
    assert hub not in hub_module.RUNNING


async def test_a_resume_on_a_fresh_hub_gets_an_event_committed_while_the_hub_starts():
    """A rolling restart: a client resumes with `after` on a node whose hub is just starting. An
    event committed after the client's replay query but before the hub read its starting seq
    would have been neither replayed nor delivered (seen once in CI: 1 of 82 lost)."""
    base = await stored_event("before")
    racing = []

    async def latest_seq_with_a_commit_racing_in():
        racing.append(await stored_event("committed while the hub starts"))
        return await notifications.latest_seq()

    hub = Hub(
        group=GROUP,
        decode=Notification.from_message,
        latest_seq=latest_seq_with_a_commit_racing_in,
        events_after=notifications.events_after,
        rejoin_seconds=3600,
        catchup_seconds=3600,
        check_seconds=3600,
        queue_size=100,
    )
    reader = Reader(hub, after=base.seq)
    try:
        await reader.wait_for(1, timeout=10)
        assert [e.seq for e in reader.got] == [racing[0].seq]
    finally:
        await reader.stop()
        await hub.stop()
