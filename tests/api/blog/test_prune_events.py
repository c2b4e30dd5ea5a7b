"""Event retention: `manage.py prune_events` deletes old history, in batches, never the newest."""

import datetime
import io
import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone

from server.app.blog.models import PostEvent

pytestmark = pytest.mark.django_db


def events(*ages_in_days: float) -> list[int]:
    """One event per age, in seq order; returns their seqs."""
    seqs = []
    for age in ages_in_days:
        row = PostEvent.objects.create(kind="published", post_id=uuid.uuid4(), title=f"{age} days old")
        # created_at is auto_now_add: backdate it afterwards.
        PostEvent.objects.filter(seq=row.seq).update(created_at=timezone.now() - datetime.timedelta(days=age))
        seqs.append(row.seq)
    return seqs


def prune(*args) -> str:
    out = io.StringIO()
    call_command("prune_events", *args, stdout=out)
    return out.getvalue().strip()


def stored() -> list[int]:
    return list(PostEvent.objects.values_list("seq", flat=True))


def test_prune_events_deletes_events_older_than_the_retention_in_batches(settings):
    settings.EVENT_RETENTION_DAYS = 7
    seqs = events(30, 20, 10, 9, 8, 1, 0)
    # Five old events, two per DELETE: three batches, the last one short.
    assert prune("--batch-size", "2") == f"Deleted 5 post events older than 7 days (oldest kept: seq {seqs[5]})."
    assert stored() == seqs[5:]
    assert prune() == f"Deleted 0 post events older than 7 days (oldest kept: seq {seqs[5]})."


def test_prune_events_keeps_the_newest_event_however_old():
    seqs = events(40, 30, 20)
    assert prune("--days", "7") == f"Deleted 2 post events older than 7 days (oldest kept: seq {seqs[2]})."
    assert stored() == [seqs[2]]


def test_prune_events_cuts_at_a_seq_so_what_is_kept_has_no_holes():
    """created_at and seq can disagree by a few milliseconds (two concurrent writes): an event
    stamped just after the cutoff but below the cut's seq goes too, rather than staying behind
    as an island that would hide the gap above it."""
    seqs = events(10, 1, 10, 0)
    assert prune("--days", "7").startswith("Deleted 3 post events")
    assert stored() == [seqs[3]]


def test_prune_events_on_an_empty_table():
    assert prune() == "Deleted 0 post events older than 7 days (none stored)."
