"""strawberry internals: the graphql-core schema behind a strawberry schema, how strawberry
executes and frames a subscription's results (shared execution reproduces it byte for byte),
and two objects each socket keeps that it no longer needs.

Checked against: strawberry-graphql 0.341.2 and 0.341.3 (release series 0.341), graphql-core
3.3.2 (release series 3.3; its per-event executor, `Executor.build`,
`build_per_event_executor` and `execute_subscription_event`, is public API).
Names used:
  strawberry.Schema._schema (the graphql-core GraphQLSchema), Schema.execution_context_class
  GraphQLWSConsumer.message_queue (dropped: postwire's consumer reads its own Inbox)
  BaseGraphQLTransportWSHandler.connection_init_timeout_task (let go once initialised)
Relied on (fingerprints in SOURCES): how strawberry turns each event into a `next` or `data`
message and sends it as JSON text (Schema._stream, Schema._handle_execution_result,
Operation.send_next, BaseGraphQLWSHandler.send_data_message, ChannelsWebSocketAdapter.send_json):
shared execution builds the same bytes, and declines when any of these change.
"""

from __future__ import annotations

import functools

from server.compat import checks

PACKAGE, CHECKED = "strawberry-graphql", ("0.341",)
GRAPHQL_CORE, GRAPHQL_CORE_CHECKED = "graphql-core", ("3.3",)
# Names of theirs distinctive enough that postwire's code outside this package must not use
# them (tests/api/compat/test_boundary.py).
INTERNALS = (
    "message_queue",
    "connection_init_timeout_task",
    "ws_consumer",
    "connection_acknowledged",
    "connection_init_received",
)

SOURCES = {
    "strawberry.schema.schema.Schema._stream": "c5ba32092056c6a1",
    "strawberry.schema.schema.Schema._handle_execution_result": "56893f850faa9f40",
    "strawberry.subscriptions.protocols.graphql_transport_ws.handlers.Operation.send_next": "e7c949ea1d1a459e",
    "strawberry.subscriptions.protocols.graphql_ws.handlers.BaseGraphQLWSHandler.send_data_message": "01087f14c639c1c8",
    "strawberry.channels.handlers.ws_handler.ChannelsWebSocketAdapter.send_json": "cd256d0d4dc6ec0e",
}


@functools.cache
def probe_shared_execution() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.release(GRAPHQL_CORE, GRAPHQL_CORE_CHECKED),
        checks.assigned_in("strawberry.schema.schema.Schema", ("_schema", "execution_context_class")),
        checks.missing("graphql.execution", ("execute_subscription_event",)),
        checks.missing("graphql.execution.Executor", ("build", "build_per_event_executor")),
        checks.unchanged(SOURCES),
    )


def probe_lean() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.assigned_in("strawberry.channels.handlers.ws_handler.GraphQLWSConsumer", ("message_queue",)),
        checks.assigned_in(
            "strawberry.subscriptions.protocols.graphql_transport_ws.handlers.BaseGraphQLTransportWSHandler",
            ("connection_init_timeout_task",),
        ),
    )


def graphql_schema(schema):
    """The graphql-core GraphQLSchema a strawberry Schema executes against."""
    return schema._schema


def drop_unused_queue(consumer) -> None:
    """strawberry's consumer makes an asyncio.Queue per socket (three deques and an Event);
    postwire's consumer reads its own Inbox instead."""
    consumer.message_queue = None


def release_init_timeout(handler) -> None:
    """strawberry cancels its connection_init timeout task but keeps it: a done task holding its
    CancelledError, traceback and frames for the socket's whole life."""
    handler.connection_init_timeout_task = None
