"""A subscriber the hub cuts off on the plain path must be told a resume point that loses nothing.

Deterministic, at the hub: the reader takes the first event and then stops reading while more
arrive than its queue holds (tests/api/realtime/test_consumer.py shows the same cut-off through
the consumer). Hub._deliver used to drop only the oldest queued event and still hand out the
newer ones, so the resume point named (the last seq handed out) lay after a hole."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from server.app.blog import notifications
from server.app.blog.models import PostEvent
from server.app.blog.notifications import Notification
from server.realtime import metrics
from server.realtime.hub import Hub, SubscriberTooSlow

pytestmark = pytest.mark.django_db(transaction=True)

GROUP = "hub-overflow-test"


@sync_to_async
def stored(title: str) -> Notification:
    row = PostEvent.objects.create(kind="published", post_id=uuid.uuid4(), title=title, published_at=timezone.now())
    return Notification.from_event(row)


async def test_resuming_where_a_cut_off_subscriber_was_told_loses_nothing():
    await stored("baseline")  # contiguous seqs from here: no catch-up reorders the test
    hub = Hub(
        group=GROUP,
        decode=Notification.from_message,
        latest_seq=notifications.latest_seq,
        events_after=notifications.events_after,
        rejoin_seconds=3600,
        catchup_seconds=3600,
        check_seconds=3600,
        queue_size=3,
    )
    cut_offs = metrics.SLOW_SUBSCRIBERS._value.get()
    stream = hub.stream({"published"})
    first = asyncio.create_task(stream.__anext__())
    await asyncio.wait_for(hub.connected.wait(), 10)
    try:
        events = [await stored(str(n)) for n in range(6)]
        for event in events:
            await get_channel_layer().group_send(GROUP, event.to_message())
        got = [await first]
        await asyncio.sleep(0.5)  # the rest arrive while nobody reads
        with pytest.raises(SubscriberTooSlow) as cut:
            while True:
                got.append(await stream.__anext__())
        resume_after = cut.value.args[0].rsplit("after=", 1)[1]
        assert resume_after == str(got[-1].seq)  # it names the last seq it yielded
        # What it received, then everything after the named seq: every event, once.
        assert [e.seq for e in got] + [e.seq for e in events if e.seq > got[-1].seq] == [e.seq for e in events]
        assert metrics.SLOW_SUBSCRIBERS._value.get() == cut_offs + 1  # counted, as on the direct path
    finally:
        await stream.aclose()
        await hub.stop()
