"""The benchmark's tutorial baseline (bench/tutorial), in process: it refuses what it cannot do."""

import pytest
from django.contrib.auth.models import AnonymousUser

from bench.tutorial.schema import schema

pytestmark = pytest.mark.django_db(transaction=True)

RESUME = "subscription Resume($from: Seq) { postNotify(after: $from) { seq title } }"


class Consumer:
    scope = {"user": AnonymousUser()}


async def test_the_tutorial_fan_out_refuses_a_resume_rather_than_ignore_it():
    """The tutorial has no replay: a resume must be refused, not ignored (the client would believe
    it has no gap)."""
    results = await schema.subscribe(RESUME, variable_values={"from": 1}, context_value={"ws": Consumer()})
    try:
        result = await anext(aiter(results))
    finally:
        await results.aclose()
    assert result.data is None
    assert len(result.errors) == 1
    assert result.errors[0].message.startswith("`after` is not supported by the tutorial's fan-out")
