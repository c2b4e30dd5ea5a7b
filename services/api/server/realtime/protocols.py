"""strawberry's two GraphQL-over-WebSocket protocol handlers, plus one thing: each operation's
task knows its own address (operation id, protocol, document, operation name, variables).

A subscription resolver sees `info`, which has the connection's context but not the operation id
or the protocol its frames must be written in. The hub needs both to write this subscriber's
frames itself. The handlers start each operation's task with the address set in a context
variable, which asyncio copies into the task; `current_operation()` reads it from the resolver.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass

from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler


@dataclass(frozen=True, slots=True)
class OperationAddress:
    id: str
    protocol: str  # GRAPHQL_TRANSPORT_WS_PROTOCOL or GRAPHQL_WS_PROTOCOL
    query: str
    operation_name: str | None
    variables: str  # canonical JSON: equal variables give equal strings

    @classmethod
    def from_message(cls, protocol: str, message: dict) -> OperationAddress | None:
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
        return cls(op_id, protocol, payload["query"], name if isinstance(name, str) else None, variables)


_current: ContextVar[OperationAddress | None] = ContextVar("postwire_operation", default=None)


def current_operation() -> OperationAddress | None:
    """The address of the operation whose task is running (None outside a WebSocket operation)."""
    return _current.get()


class _Addressed:
    """Sets the operation's address around the base handler's start, which creates its task."""

    protocol: str

    async def _start_addressed(self, start, message) -> None:
        token = _current.set(OperationAddress.from_message(self.protocol, message))
        try:
            await start(message)
        finally:
            _current.reset(token)


class TransportWSHandler(_Addressed, BaseGraphQLTransportWSHandler):
    protocol = GRAPHQL_TRANSPORT_WS_PROTOCOL

    async def handle_subscribe(self, message) -> None:
        await self._start_addressed(super().handle_subscribe, message)


class LegacyWSHandler(_Addressed, BaseGraphQLWSHandler):
    protocol = GRAPHQL_WS_PROTOCOL

    async def handle_start(self, message) -> None:
        await self._start_addressed(super().handle_start, message)
