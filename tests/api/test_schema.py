"""The schemas' cost limits, each answered with a GraphQL error naming it, and document caches
that keep GraphQL's error reporting intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import parse, specified_rules, validate
from strawberry.types.execution import PreExecutionError

from server.schema import DOCUMENT_CACHE_SIZE, LIMITS, CachedParse, schema, ws_schema

API_DIR = Path(__file__).resolve().parents[2] / "services" / "api"


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


def errors(document: str) -> list[str]:
    result = schema.execute_sync(document)
    return [e.message for e in result.errors or []]


def validation_errors(document: str) -> list[str]:
    """What validation alone says (documents that pass would need a request to execute)."""
    return [e.message for e in validate(schema._schema, parse(document), [*specified_rules, *LIMITS])]


def test_aliases_beyond_the_limit_are_refused():
    assert validation_errors("{ me { " + " ".join(f"a{i}: username" for i in range(15)) + " } }") == []
    assert errors("{ me { " + " ".join(f"a{i}: username" for i in range(16)) + " } }") == [
        "16 aliases found. Allowed: 15"
    ]


def test_root_fields_beyond_the_limit_are_refused_fragments_included():
    ten = "{ " + " ".join(["serverNode"] * 9) + " ...F } fragment F on Query { me { username } }"
    assert validation_errors(ten) == []
    eleven = "{ serverNode ...F } fragment F on Query { " + " ".join(["serverNode"] * 9) + " me { username } }"
    assert errors(eleven) == ["11 root fields requested. Allowed: 10"]


def test_documents_beyond_the_token_limit_are_refused_before_parsing_them_whole():
    huge = "{ " + "serverNode " * 2500 + "}"
    assert errors(huge) == ["Syntax Error: Document contains more than 2000 tokens. Parsing aborted."]


def test_cyclic_introspection_is_refused():
    cyclic = "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }"
    assert errors(cyclic) == ["Maximum introspection depth exceeded"]


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "POSTWIRE_", "GRAPHIQL_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=API_DIR,
        capture_output=True,
        text=True,
        env={**clean, "DJANGO_SETTINGS_MODULE": "server.settings", "POSTWIRE_ENV": "development", **env},
    )


EXECUTE = """
import django, json; django.setup()
from server.schema import schema
print(json.dumps([e.message for e in schema.execute_sync({document!r}).errors or []]))
"""


@pytest.mark.parametrize(
    ("env", "document", "expected"),
    [
        (
            {"POSTWIRE_GRAPHQL_MAX_DEPTH": "2"},
            "{ posts { edges { node { title } } } }",
            ["'anonymous' exceeds maximum operation depth of 2"],
        ),
        (
            {"POSTWIRE_GRAPHQL_INTROSPECTION": "false", "GRAPHIQL_ENABLED": "false"},
            "{ __schema { queryType { name } } }",
            [
                "GraphQL introspection has been disabled, but the requested query contained the field '__schema'.",
                "GraphQL introspection has been disabled, but the requested query contained the field 'queryType'.",
            ],
        ),
        ({"POSTWIRE_GRAPHQL_INTROSPECTION": "false", "GRAPHIQL_ENABLED": "false"}, "{ __typename }", []),
    ],
    ids=["depth", "introspection off", "typename with introspection off"],
)
def test_limits_are_settings(env, document, expected):
    result = run_python(EXECUTE.format(document=document), **env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == expected


def test_introspection_is_off_in_production_by_default():
    result = run_python(
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.GRAPHQL_INTROSPECTION, settings.GRAPHIQL_ENABLED)",
        POSTWIRE_ENV="production",
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u:p@db/p",
        REDIS_URL="redis://r:6379/0",
        DJANGO_ALLOWED_HOSTS="example.com",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]
