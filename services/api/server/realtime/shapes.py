"""Shared execution (fast path `shared_execution`): each event executed once per *shape*.

A shape is what decides a subscriber's result: the schema, the document, the operation name and
the variables (canonical JSON), and, only if the document selects a field marked
`viewer_dependent`, the viewer. Subscribers of one shape get the same payload, serialized once;
only the envelope differs (graphql-transport-ws `next` vs legacy graphql-ws `data`) and the
operation id, which is spliced into the pre-encoded message. Parsing, validation and permission
checks still run per subscription, through strawberry, when it subscribes.

The sharing rule is enforced, not just documented: a shape without a viewer executes with a
`SharedContext` that has no viewer, so a resolver that reads `info.context` without being marked
gets an error in its result rather than another subscriber's data.

Prior art: graphql-ruby's broadcast subscriptions, Centrifugo's one encoding per publication.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import DocumentNode, TypeInfo, TypeInfoVisitor, Visitor, parse, visit
from graphql.execution import execute_subscription_event
from strawberry.extensions import SchemaExtension
from strawberry.types import Info

from server import compat
from server.compat import strawberry as strawberry_compat
from server.realtime.operations import Operation, WsProtocol

VIEWER_DEPENDENT = "postwire.viewer_dependent"
_SENTINEL = "\x00postwire-operation-id\x00"


def viewer_dependent(**field_kwargs):
    """`strawberry.field` for a field whose value depends on who is asking: subscribers that
    select it share a result only with subscribers who are the same viewer."""
    metadata = {**field_kwargs.pop("metadata", {}), VIEWER_DEPENDENT: True}
    return strawberry.field(metadata=metadata, **field_kwargs)


class ContextNotShared(LookupError):
    """A resolver read the subscriber's context during a shared execution."""


class SharedContext:
    """`info.context` of a shared execution: the viewer if the shape is keyed by it, else nothing."""

    __slots__ = ("_viewer",)
    _NO_VIEWER = object()

    def __init__(self, viewer: Any = _NO_VIEWER) -> None:
        self._viewer = viewer

    @property
    def viewer(self):
        if self._viewer is SharedContext._NO_VIEWER:
            raise ContextNotShared(
                "this field reads the viewer but is not marked viewer_dependent, so its result "
                "would be shared between viewers; declare it with viewer_dependent()"
            )
        return self._viewer

    def __getitem__(self, key):
        raise ContextNotShared(
            f"a resolver read info.context[{key!r}] in a shared execution: only viewer(info) is "
            "available there, and only in fields declared with viewer_dependent()"
        )

    def __getattr__(self, name):
        raise AttributeError(
            f"SharedContext has no {name!r}: subscription results are shared; "
            "use viewer(info) in a field declared with viewer_dependent()"
        )


def viewer(info: Info):
    """The user asking, on every path: shared execution, a WebSocket's own context, or HTTP."""
    from django.contrib.auth.models import AnonymousUser

    context = info.context
    if isinstance(context, SharedContext):
        return context.viewer
    if isinstance(context, dict):
        return context["ws"].scope.get("user") or AnonymousUser()
    return getattr(context.request, "user", None) or AnonymousUser()


def viewer_key(user) -> str:
    if user is None or not user.is_authenticated:
        return "anonymous"
    return f"user:{user.pk}"


@functools.cache
def unsupported_reason(schema: strawberry.Schema) -> str | None:
    """None if this schema's subscription results can be shared; else why not (its subscribers
    then take the strawberry path)."""
    reason = compat.decision("shared_execution")
    if reason is not None:
        return reason
    for extension in schema.get_extensions():
        cls = type(extension)
        for hook in ("resolve", "get_results", "on_stream_result"):
            if getattr(cls, hook) is not getattr(SchemaExtension, hook):
                return f"extension {cls.__name__} implements {hook}, which runs per subscriber"
    return None


@functools.cache
def _viewer_fields(schema: strawberry.Schema) -> frozenset[tuple[str, str]]:
    """(GraphQL type, field) of every field declared with viewer_dependent()."""
    marked = set()
    for type_name in strawberry_compat.graphql_schema(schema).type_map:
        definition = schema.get_type_by_name(type_name)
        for field in getattr(definition, "fields", None) or ():
            if getattr(field, "metadata", None) and field.metadata.get(VIEWER_DEPENDENT):
                marked.add((type_name, schema.config.name_converter.from_field(field)))
    return frozenset(marked)


class _ViewerFieldFinder(Visitor):
    def __init__(self, type_info: TypeInfo, marked: frozenset) -> None:
        super().__init__()
        self.type_info = type_info
        self.marked = marked
        self.found = False

    def enter_field(self, node, *_args):
        parent = self.type_info.get_parent_type()
        if parent is not None and (parent.name, node.name.value) in self.marked:
            self.found = True
            return self.BREAK
        return None


def selects_viewer_dependent(schema: strawberry.Schema, document: DocumentNode) -> bool:
    marked = _viewer_fields(schema)
    if not marked:
        return False
    type_info = TypeInfo(strawberry_compat.graphql_schema(schema))
    finder = _ViewerFieldFinder(type_info, marked)
    visit(document, TypeInfoVisitor(type_info, finder))
    return finder.found


@functools.lru_cache(maxsize=1024)
def _document(query: str) -> DocumentNode:
    """A document strawberry has already parsed and validated (with its limits) for this operation."""
    return parse(query)


@functools.lru_cache(maxsize=4096)
def _selects_viewer(schema: strawberry.Schema, query: str) -> bool:
    return selects_viewer_dependent(schema, _document(query))


class Rendered:
    """One event's result for one shape, encoded once per protocol; messages cached per operation id."""

    __slots__ = ("_payload", "_encode", "_parts", "_frames", "_texts")

    def __init__(self, payload: dict, encode: Callable[[object], str]) -> None:
        self._payload = payload
        self._encode = encode
        self._parts: dict[str, tuple[str, str]] = {}
        self._frames: dict[tuple[str, str], bytes] = {}
        self._texts: dict[tuple[str, str], str] = {}

    def _split(self, protocol: str) -> tuple[str, str]:
        parts = self._parts.get(protocol)
        if parts is None:
            # strawberry's key order for each envelope (compat.strawberry checks it is unchanged)
            if protocol == WsProtocol.TRANSPORT:
                message = {"id": _SENTINEL, "type": "next", "payload": self._payload}
            else:
                message = {"type": "data", "id": _SENTINEL, "payload": self._payload}
            text = self._encode(message)
            marker = self._encode(_SENTINEL)
            # The id precedes the payload, so the first occurrence is the id even if a title
            # happens to contain the sentinel.
            at = text.index(marker)
            parts = self._parts[protocol] = (text[:at], text[at + len(marker) :])
        return parts

    def text(self, protocol: str, encoded_id: str) -> str:
        """The JSON text message strawberry would have sent this operation."""
        key = (protocol, encoded_id)
        text = self._texts.get(key)
        if text is None:
            prefix, suffix = self._split(protocol)
            text = self._texts[key] = prefix + encoded_id + suffix
        return text

    def frame(self, protocol: str, encoded_id: str) -> bytes:
        """That message as a complete WebSocket text frame."""
        key = (protocol, encoded_id)
        frame = self._frames.get(key)
        if frame is None:
            payload = self.text(protocol, encoded_id).encode()
            frame = self._frames[key] = frame_header(len(payload)) + payload
        return frame


def frame_header(payload_length: int) -> bytes:
    """A server-to-client text frame's header (FIN, opcode 1, no mask), as RFC 6455 5.2 lays out."""
    if payload_length < 126:
        return bytes((0x81, payload_length))
    if payload_length < 1 << 16:
        return bytes((0x81, 126)) + payload_length.to_bytes(2, "big")
    return bytes((0x81, 127)) + payload_length.to_bytes(8, "big")


class Shape:
    """Subscribers whose results cannot differ, and the one executor that produces them."""

    __slots__ = ("schema", "executor", "to_source", "encode", "kinds", "delivered", "subscribers", "key")

    def __init__(
        self,
        *,
        schema: strawberry.Schema,
        document: DocumentNode,
        operation_name: str | None,
        variables: str,
        context: SharedContext,
        to_source: Callable[[Any], Any],
        encode: Callable[[object], str],
        kinds: frozenset[str],
        delivered,
    ) -> None:
        executor = schema.execution_context_class.build(
            strawberry_compat.graphql_schema(schema),
            document,
            None,
            context,
            json.loads(variables),
            operation_name,
            operation_extensions=None,
        )
        if isinstance(executor, list):  # cannot happen: strawberry built the same executor already
            raise ValueError(executor[0].message)
        self.schema = schema
        self.executor = executor
        self.to_source = to_source
        self.encode = encode
        self.kinds = kinds
        self.delivered = delivered  # the Prometheus counter child for this subscription field
        self.subscribers: dict = {}  # an insertion-ordered set, maintained by the fan-out
        self.key = None  # set by the fan-out, which keeps shapes by key

    async def render(self, event) -> Rendered:
        """Execute the operation once for this event, exactly as strawberry would per subscriber."""
        result = execute_subscription_event(self.executor.build_per_event_executor(self.to_source(event)))
        if isawaitable(result):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            self.schema.process_errors(result.errors, None)
            payload["errors"] = [error.formatted for error in result.errors]
        return Rendered(payload, self.encode)


def shape_key(operation: Operation, schema: strawberry.Schema) -> tuple[tuple, SharedContext]:
    """Subscribers with equal keys share one execution per event; and the context it runs with."""
    if _selects_viewer(schema, operation.query):
        user = operation.consumer.scope.get("user")
        who, context = viewer_key(user), SharedContext(user)
    else:
        who, context = None, SharedContext()
    key = (id(schema), operation.query, operation.operation_name, operation.variables, who, type(operation.consumer))
    return key, context


def make_shape(operation: Operation, schema, context: SharedContext, *, to_source, kinds, delivered) -> Shape:
    return Shape(
        schema=schema,
        document=_document(operation.query),
        operation_name=operation.operation_name,
        variables=operation.variables,
        context=context,
        to_source=to_source,
        encode=operation.consumer.encode_json,
        kinds=kinds,
        delivered=delivered,
    )
