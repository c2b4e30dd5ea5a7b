"""Resuming subscriptions through the schema, in process: the `Seq` scalar and the refusal of a
resume whose events were pruned, as a client receives them (strawberry's results)."""

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from server.app.blog.graph.types import SEQ_MAX, parse_seq
from server.app.blog.models import PostEvent
from server.app.blog.notifications import get_hub
from server.schema import ws_schema

pytestmark = pytest.mark.django_db(transaction=True)

RESUME = "subscription Resume($from: Seq) { postNotify(after: $from) { seq title } }"
BIG = 3_000_000_000  # above 2**31 - 1, where GraphQL's Int stops


class Consumer:
    scope = {"user": AnonymousUser()}


@sync_to_async
def event(title: str, seq: int | None = None) -> PostEvent:
    extra = {} if seq is None else {"seq": seq}  # `seq` is an identity column: it may be forced
    return PostEvent.objects.create(
        kind="published", post_id=uuid.uuid4(), title=title, published_at=timezone.now(), **extra
    )


async def first_result(query: str, variables: dict | None = None):
    """The first result a subscriber gets (under direct delivery as in production: outside a
    WebSocket operation it takes the strawberry path, as every replay does)."""
    results = await ws_schema.subscribe(query, variable_values=variables, context_value={"ws": Consumer()})
    try:
        return await anext(aiter(results))
    finally:
        await results.aclose()
        await get_hub().stop()


async def test_a_resume_from_before_the_retained_events_gets_the_refetch_error():
    seen, pruned, kept = await event("seen"), await event("pruned"), await event("kept")
    await sync_to_async(PostEvent.objects.filter(seq__lte=pruned.seq).delete)()
    result = await first_result(RESUME, {"from": seen.seq})
    assert result.data is None
    assert [e.message for e in result.errors] == [
        f"Events after seq {seen.seq} are no longer retained (oldest kept: {kept.seq}): "
        "refetch the posts, then subscribe without after"
    ]
    # From the last pruned event on, nothing is missing: the resume goes ahead.
    resumed = await first_result(RESUME, {"from": pruned.seq})
    assert resumed.errors is None and resumed.data == {"postNotify": {"seq": kept.seq, "title": "kept"}}


async def test_seq_above_32_bits_round_trips_as_a_number():
    await event("before", seq=BIG)
    await event("after", seq=BIG + 1)
    as_variable = await first_result(RESUME, {"from": BIG})
    assert as_variable.errors is None
    assert as_variable.data == {"postNotify": {"seq": BIG + 1, "title": "after"}}
    as_literal = await first_result(f"subscription {{ postNotify(after: {BIG}) {{ seq }} }}")
    assert as_literal.errors is None and as_literal.data == {"postNotify": {"seq": BIG + 1}}


@pytest.mark.parametrize("value", [-1, SEQ_MAX + 1, "5", 5.0, True, None])
def test_seq_accepts_integers_in_the_columns_range_only(value):
    with pytest.raises(ValueError, match="a Seq is an integer from 0 to 9223372036854775807"):
        parse_seq(value)
    assert parse_seq(SEQ_MAX) == SEQ_MAX and parse_seq(0) == 0


async def test_a_seq_out_of_range_is_a_graphql_error_not_a_database_error():
    result = await first_result(RESUME, {"from": SEQ_MAX + 1})
    assert "a Seq is an integer from 0 to 9223372036854775807" in result.errors[0].message
