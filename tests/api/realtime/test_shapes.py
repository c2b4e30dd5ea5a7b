"""Shared execution (server.realtime.shapes) against strawberry's own per-subscriber execution, in process.

For each document, the frame the shared path builds must be byte for byte what strawberry's
handler would send (execute, `send_next` or `send_data_message`, the view's JSON encoding,
autobahn's framing), and a field that reads the subscriber's context must not be shared.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import pytest
import strawberry
from django.contrib.auth.models import AnonymousUser
from graphql import parse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from websockets.frames import Frame, Opcode

from server.realtime import shapes
from server.realtime.shapes import frame_header


@strawberry.type
class Item:
    name: str
    n: int

    @strawberry.field
    def fails(self) -> str | None:
        raise ValueError(f"no value for {self.name}")

    @strawberry.field
    def peeks(self, info: strawberry.Info) -> str:
        # Reads the subscriber's context without being marked: must not be shared.
        return str(info.context["connection_params"])

    @shapes.viewer_dependent()
    def viewed_by(self, info: strawberry.Info) -> str:
        return shapes.viewer_key(shapes.viewer(info))


EVENTS = [Item(name='plain "quoted" \\ é 🙂', n=1), Item(name="</script>", n=2**40)]


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self, prefix: str = "") -> AsyncGenerator[Item, None]:
        for item in EVENTS:
            yield Item(name=prefix + item.name, n=item.n)


SCHEMA = strawberry.Schema(query=Query, subscription=Subscription)


class User:
    is_authenticated = True

    def __init__(self, pk):
        self.pk = pk


def ws_context(user) -> dict:
    class Consumer:
        scope = {"user": user}

    return {"ws": Consumer(), "request": None, "connection_params": {"secret": "mine"}}


async def plain_frames(query, variables, operation_name, protocol, op_id, context) -> list[bytes]:
    """What strawberry's handlers send per subscriber, framed as a server frames a text message."""
    stream = await SCHEMA.subscribe(
        query, variable_values=variables, operation_name=operation_name, context_value=context
    )
    frames = []
    async for result in stream:
        payload = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        if protocol == GRAPHQL_TRANSPORT_WS_PROTOCOL:
            message = {"id": op_id, "type": "next", "payload": payload}
        else:
            message = {"type": "data", "id": op_id, "payload": payload}
        text = json.dumps(message, separators=(",", ":")).encode()  # strawberry's encode_json
        frames.append(Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[]))  # as a server frames it
    return frames


async def shared_frames(query, variables, operation_name, protocol, op_id, user, viewer_keyed) -> list[bytes]:
    shape = shapes.Shape(
        schema=SCHEMA,
        document=parse(query),
        operation_name=operation_name,
        variables=json.dumps(variables, sort_keys=True),
        context=shapes.SharedContext(user) if viewer_keyed else shapes.SharedContext(),
        to_source=lambda item: item,
        encode=lambda m: json.dumps(m, separators=(",", ":")),
        kinds=frozenset(),
        delivered=None,
    )
    frames = []
    for item in EVENTS:
        name_prefix = (variables or {}).get("p", "")
        rendered = await shape.render(Item(name=name_prefix + item.name, n=item.n))
        frames.append(rendered.frame(protocol, json.dumps(op_id)))
    return frames


DOCUMENTS = [
    ("subscription { items { name n } }", None, None),
    (
        "subscription S($p: String!) { x: items(prefix: $p) { ...F y: n } } fragment F on Item { name }",
        {"p": "pre:"},
        "S",
    ),
    ("subscription { items { name fails n } }", None, None),  # a resolver error, located
    ("query Q { ok } subscription Sub { items { n __typename } }", None, "Sub"),
]


@pytest.mark.parametrize("protocol", [GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL])
@pytest.mark.parametrize(("query", "variables", "operation_name"), DOCUMENTS)
async def test_shared_frames_are_byte_identical_to_strawberrys(protocol, query, variables, operation_name):
    op_id = 'op "1" é'  # an id that needs escaping
    plain = await plain_frames(query, variables, operation_name, protocol, op_id, ws_context(AnonymousUser()))
    mine = await shared_frames(query, variables, operation_name, protocol, op_id, AnonymousUser(), False)
    assert mine == plain
    assert len(plain) == len(EVENTS)


async def test_viewer_dependent_fields_make_the_viewer_part_of_the_shape():
    query = "subscription { items { n viewedBy } }"
    assert shapes.selects_viewer_dependent(SCHEMA, parse(query))
    assert not shapes.selects_viewer_dependent(SCHEMA, parse("subscription { items { n } }"))
    # Through a fragment too.
    assert shapes.selects_viewer_dependent(
        SCHEMA, parse("subscription { items { ...V } } fragment V on Item { viewedBy }")
    )
    alice, bob = User(1), User(2)
    for user in (alice, bob, AnonymousUser()):
        plain = await plain_frames(query, None, None, GRAPHQL_TRANSPORT_WS_PROTOCOL, "a", ws_context(user))
        mine = await shared_frames(query, None, None, GRAPHQL_TRANSPORT_WS_PROTOCOL, "a", user, True)
        assert mine == plain
        assert shapes.viewer_key(user).encode() in mine[0]


async def test_a_field_reading_the_context_unmarked_gets_an_error_not_someone_elses_data():
    query = "subscription { items { n peeks } }"
    mine = await shared_frames(query, None, None, GRAPHQL_TRANSPORT_WS_PROTOCOL, "a", AnonymousUser(), False)
    body = json.loads(mine[0][4:] if mine[0][1] == 126 else mine[0][2:])  # after the frame header
    assert body["payload"]["data"] is None  # peeks is non-null: the error nulls the item
    assert "viewer_dependent" in body["payload"]["errors"][0]["message"]
    assert b"secret" not in mine[0]
    # And reading the viewer without the marker is refused the same way.
    with pytest.raises(shapes.ContextNotShared):
        _ = shapes.SharedContext().viewer


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_header_matches_rfc6455_framing(length):
    payload = b"x" * length
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert frame_header(length) + payload == expected


def test_the_websocket_schema_can_share_results():
    """An extension that hooks each streamed result (MaskErrors, say) would silently turn the
    shared path off for every subscriber; the production schema must not carry one."""
    from server.realtime.shapes import unsupported_reason
    from server.schema import ws_schema

    assert unsupported_reason(ws_schema) is None
