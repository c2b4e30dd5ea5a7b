"""strawberry's two GraphQL-over-WebSocket protocol handlers, plus:

- every inbound message is checked before strawberry sees it (server.realtime.messages), in the
  socket adapter both handlers read from: a malformed one, invalid JSON or a binary frame closes
  the socket with 4400 and a reason, instead of killing the protocol task (or being ignored, by
  the legacy handler) and leaving the socket open and deaf;
- the legacy graphql-ws protocol gets the `connection_init` timeout graphql-transport-ws has;
- each operation's task starts with its `Operation` current (server.realtime.operations), and
  what it logs carries the operation id.
"""

from __future__ import annotations

import asyncio
import json

from django.conf import settings
from strawberry.channels.handlers.ws_handler import ChannelsWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from server import compat, logs
from server.compat import strawberry as strawberry_compat
from server.realtime import messages, operations
from server.realtime.operations import Operation, WsProtocol

INVALID_MESSAGE = 4400  # graphql-transport-ws's code for a malformed message; used for both
INIT_TIMEOUT = 4408


class StrictWebSocketAdapter(ChannelsWebSocketAdapter):
    """The socket as strawberry's handlers read it: only well-formed messages get through."""

    def __init__(self, view, request, response) -> None:
        super().__init__(view, request, response)
        self.consumer = response

    async def iter_json(self, *, ignore_parsing_errors: bool = False):
        consumer = self.consumer
        while True:
            text = await consumer.inbox.get()
            if text is consumer.DISCONNECTED:
                return
            if text is None:
                await self.close(INVALID_MESSAGE, "WebSocket message type must be text")
                return
            try:
                message = self.view.decode_json(text)
            except json.JSONDecodeError:
                await self.close(INVALID_MESSAGE, "WebSocket message must be valid JSON")
                return
            reason = messages.problem(consumer.subprotocol, message)
            if reason is not None:
                await self.close(INVALID_MESSAGE, f"Invalid message: {reason}")
                return
            yield message


class _Operations:
    """Starts each operation's task with its Operation current (asyncio copies it into the task)."""

    protocol: WsProtocol

    async def start_operation(self, start, message) -> None:
        operation = Operation.from_message(self.view, self.protocol, message)
        token = operations.running(operation)
        log_token = logs.operation_id.set(operation.id[:64] if operation is not None else "-")
        try:
            await start(message)
        finally:
            logs.operation_id.reset(log_token)
            operations.done(token)


class TransportWSHandler(_Operations, BaseGraphQLTransportWSHandler):
    protocol = WsProtocol.TRANSPORT

    async def handle_connection_init(self, message) -> None:
        await super().handle_connection_init(message)
        if compat.on("lean_sockets"):
            strawberry_compat.release_init_timeout(self)

    async def handle_ping(self, message) -> None:
        # A client that pings without reading would make its pongs pile up: bounded like frames.
        unsent = self.view.connection.unsent_bytes()
        if unsent is not None and unsent > settings.WS_MAX_UNSENT_BYTES:
            await self.websocket.close(1008, "Too slow: pings are not being read")
            return
        await super().handle_ping(message)

    async def handle_subscribe(self, message) -> None:
        await self.start_operation(super().handle_subscribe, message)


class LegacyWSHandler(_Operations, BaseGraphQLWSHandler):
    """strawberry's graphql-ws handler, with a connection_init timeout."""

    protocol = WsProtocol.LEGACY
    initialised = False

    async def handle(self) -> None:
        timeout = asyncio.create_task(self._connection_init_timeout())
        try:
            await super().handle()
        finally:
            timeout.cancel()

    async def _connection_init_timeout(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.initialised:
            await self.websocket.close(INIT_TIMEOUT, "Connection initialisation timeout")

    async def handle_connection_init(self, message) -> None:
        self.initialised = True  # accepted or refused, the timeout's job is done
        await super().handle_connection_init(message)

    async def handle_start(self, message) -> None:
        await self.start_operation(super().handle_start, message)
