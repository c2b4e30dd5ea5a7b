"""What a client may send on each GraphQL-over-WebSocket protocol, checked before strawberry sees it.

strawberry trusts the shape of a decoded message: a list, a number, a string payload or a
non-string id raises inside its protocol task, which dies while the socket stays open, answers
pings and queues whatever the client sends next. Here every message is checked against its
protocol's definition first; `problem()` returns a reason a person can act on, and the handler
closes the socket with it (graphql-transport-ws: 4400, as its spec says; legacy graphql-ws, whose
spec has no code for it: 4400 as well, with the same kind of reason).
"""

from __future__ import annotations

from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

MAX_ID_LENGTH = 128

_TRANSPORT_TYPES = {"connection_init", "ping", "pong", "subscribe", "complete"}
_LEGACY_TYPES = {"connection_init", "start", "stop", "connection_terminate"}


def _optional(value, kind) -> bool:
    return value is None or isinstance(value, kind)


def _operation_id(message: dict) -> str | None:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        return "'id' must be a non-empty string"
    if len(op_id) > MAX_ID_LENGTH:
        return f"'id' is longer than {MAX_ID_LENGTH} characters"
    return None


def _operation_payload(message: dict) -> str | None:
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return "'payload' must be an object with a 'query' string"
    if not isinstance(payload.get("query"), str):
        return "'payload.query' must be a string"
    if not _optional(payload.get("variables"), dict):
        return "'payload.variables' must be an object or null"
    if not _optional(payload.get("operationName"), str):
        return "'payload.operationName' must be a string or null"
    if not _optional(payload.get("extensions"), dict):
        return "'payload.extensions' must be an object or null"
    return None


def problem(protocol: str, message: object) -> str | None:
    """None if `message` is well-formed for `protocol`, else what is wrong with it."""
    if not isinstance(message, dict):
        return f"a message must be a JSON object, not {type(message).__name__}"
    kind = message.get("type")
    known = _TRANSPORT_TYPES if protocol == GRAPHQL_TRANSPORT_WS_PROTOCOL else _LEGACY_TYPES
    if not isinstance(kind, str):
        return "a message needs a 'type' string"
    if kind not in known:
        return f"unknown message type {kind[:40]!r} (expected one of {', '.join(sorted(known))})"
    if kind in ("connection_init", "ping", "pong"):
        if not _optional(message.get("payload"), dict):
            return f"'{kind}' payload must be an object or null"
        return None
    if kind in ("subscribe", "start"):
        return _operation_id(message) or _operation_payload(message)
    if kind in ("complete", "stop"):
        return _operation_id(message)
    return None
