"""The schemas' document caches keep GraphQL's error reporting intact."""

from __future__ import annotations

import pytest
from strawberry.types.execution import PreExecutionError

from server.schema import DOCUMENT_CACHE_SIZE, CachedParse, schema, ws_schema


@pytest.mark.asyncio
async def test_syntax_error_in_a_stream_is_a_graphql_error_every_time():
    # Twice: the second call goes through the (failed) cache lookup again.
    for _ in range(2):
        results = await ws_schema.stream("subscription {", context_value={})
        first = await anext(aiter(results))
        assert isinstance(first, PreExecutionError)
        assert first.errors[0].message == "Syntax Error: Expected Name, found <EOF>."


def test_valid_documents_still_come_from_the_cache():
    cache = CachedParse(maxsize=DOCUMENT_CACHE_SIZE).cached_parse_document
    before = cache.cache_info().hits
    for _ in range(3):
        result = schema.execute_sync("{ serverNode }")
        assert result.errors is None and result.data["serverNode"]
    assert cache.cache_info().hits >= before + 2
