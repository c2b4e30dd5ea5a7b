"""strawberry's two GraphQL-over-WebSocket protocol handlers, plus:

- every inbound message is checked before strawberry sees it (server.realtime.messages): a
  malformed one closes the socket with 4400 and a reason, instead of killing the protocol task
  and leaving the socket open and deaf;
- the legacy graphql-ws protocol gets the `connection_init` timeout graphql-transport-ws has;
- each operation's task knows its own address (operation id, protocol, document, operation name,
  variables), and what it logs carries the operation id.

A subscription resolver sees `info`, which has the connection's context but not the operation id
or the protocol its frames must be written in. The hub needs both to write this subscriber's
frames itself. The handlers start each operation's task with the address set in a context
variable, which asyncio copies into the task; `current_operation()` reads it from the resolver.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived, WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from server import logs
from server.realtime import messages
from server.realtime.wire import wire_of

INVALID_MESSAGE = 4400  # graphql-transport-ws's code for a malformed message; used for both
INIT_TIMEOUT = 4408


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
        address = OperationAddress.from_message(self.protocol, message)
        token = _current.set(address)
        log_token = logs.operation_id.set(address.id[:64] if address is not None else "-")
        try:
            await start(message)
        finally:
            logs.operation_id.reset(log_token)
            _current.reset(token)


class TransportWSHandler(_Addressed, BaseGraphQLTransportWSHandler):
    protocol = GRAPHQL_TRANSPORT_WS_PROTOCOL

    async def handle_message(self, message) -> None:
        reason = messages.problem(self.protocol, message)
        if reason is not None:
            await self.handle_invalid_message(f"Invalid message: {reason}")
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message) -> None:
        await super().handle_connection_init(message)
        # strawberry cancels its init-timeout task here but keeps it: a done task holding its
        # CancelledError, traceback and frames for the socket's whole life (~1.5 KiB per socket).
        self.connection_init_timeout_task = None

    async def handle_ping(self, message) -> None:
        # A client that pings without reading would make its pongs pile up: bounded like frames.
        wire = wire_of(self.websocket.ws_consumer.scope)
        if wire is not None and wire.unsent_bytes() > settings.WS_MAX_UNSENT_BYTES:
            await self.websocket.close(1008, "Too slow: pings are not being read")
            return
        await super().handle_ping(message)

    async def handle_subscribe(self, message) -> None:
        await self._start_addressed(super().handle_subscribe, message)


class LegacyWSHandler(_Addressed, BaseGraphQLWSHandler):
    """strawberry's graphql-ws handler, but strict: invalid JSON, a binary frame or a message of
    the wrong shape closes the socket with a reason (strawberry ignores invalid JSON and lets a
    wrong shape kill its task), and a socket that sends no connection_init in time is closed."""

    protocol = GRAPHQL_WS_PROTOCOL

    async def handle(self) -> None:
        timeout = asyncio.create_task(self._connection_init_timeout())
        try:
            try:
                async for message in self.websocket.iter_json(ignore_parsing_errors=False):
                    reason = messages.problem(self.protocol, message)
                    if reason is not None:
                        await self.websocket.close(INVALID_MESSAGE, f"Invalid message: {reason}")
                        return
                    await self.handle_message(message)
            except NonTextMessageReceived:
                await self.websocket.close(INVALID_MESSAGE, "WebSocket message type must be text")
            except NonJsonMessageReceived:
                await self.websocket.close(INVALID_MESSAGE, "WebSocket message must be valid JSON")
        except WebSocketDisconnected:
            pass
        finally:
            timeout.cancel()
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def _connection_init_timeout(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.connection_acknowledged:
            await self.websocket.close(INIT_TIMEOUT, "Connection initialisation timeout")

    async def handle_start(self, message) -> None:
        await self._start_addressed(super().handle_start, message)
