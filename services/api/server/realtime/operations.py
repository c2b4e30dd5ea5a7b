"""Which subscription is running: the one route from a WebSocket operation to the hub.

A subscription resolver sees `info` (the connection's context) but not the operation id or the
protocol its results are framed in, which the hub needs to write them itself. The protocol
handlers (server.realtime.protocols) start each operation's task with its `Operation` in a
context variable, which asyncio copies into the task; the resolver reads it with
`current_operation()` and hands it to the hub.
"""

from __future__ import annotations

import enum
import json
from contextvars import ContextVar
from dataclasses import dataclass

from server.realtime.sockets import Connection


class WsProtocol(enum.StrEnum):
    TRANSPORT = "graphql-transport-ws"  # `next` messages
    LEGACY = "graphql-ws"  # `data` messages


@dataclass(frozen=True, slots=True)
class Operation:
    connection: Connection  # the WebSocket it runs on
    consumer: object  # the consumer serving that WebSocket (its JSON encoding, its scope's user)
    id: str
    protocol: WsProtocol
    query: str
    operation_name: str | None
    variables: str  # canonical JSON: equal variables give equal strings

    @classmethod
    def from_message(cls, consumer, protocol: WsProtocol, message: dict) -> Operation | None:
        """None for a message the handler is about to reject anyway (no id, no query)."""
        op_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(op_id, str) or not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return None
        name = payload.get("operationName")
        try:
            variables = json.dumps(payload.get("variables"), sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        return cls(
            consumer.connection,
            consumer,
            op_id,
            protocol,
            payload["query"],
            name if isinstance(name, str) else None,
            variables,
        )


_current: ContextVar[Operation | None] = ContextVar("postwire_operation", default=None)


def current_operation() -> Operation | None:
    """The operation whose task is running (None outside a WebSocket operation)."""
    return _current.get()


def running(operation: Operation | None):
    """Set the current operation (for the task about to be created); returns the reset token."""
    return _current.set(operation)


def done(token) -> None:
    _current.reset(token)
