"""Shared execution: each event is executed once per *shape*, not once per subscriber.

A shape is what decides a subscriber's result: the schema, the document, the operation name and
the variables (canonical JSON), and, only if the document selects a field marked
`viewer_dependent`, the viewer. Subscribers of one shape get the same payload, serialized once;
only the envelope differs (graphql-transport-ws `next` vs legacy graphql-ws `data`) and the
operation id, which is spliced into the pre-encoded message. Parsing, validation and permission
checks still run per subscription, through strawberry, when it subscribes.

The sharing rule is enforced, not just documented: a shape without a viewer executes with a
`SharedContext` that has no viewer, so a resolver that reads `info.context` without being marked
gets an error in its result rather than another subscriber's data. Marked fields make the viewer
part of the shape's key, and `viewer(info)` returns that viewer on every path.

Prior art: graphql-ruby's broadcast subscriptions, Centrifugo's one encoding per publication.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLSchema, TypeInfo, TypeInfoVisitor, Visitor, visit
from graphql.execution import execute_subscription_event
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import Info

from server.realtime.protocols import OperationAddress, current_operation
from server.realtime.wire import frame_header, wire_of

# The strawberry/graphql-core releases whose execution this module reproduces byte for byte
# (tests/api/realtime/test_shared.py and the stack tier's equality test pin it).
SUPPORTED = {"strawberry-graphql": "0.341.", "graphql-core": "3.3."}

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
    """None if this schema's subscription results can be shared; else why not (the hub then
    keeps the plain path for it)."""
    for package, series in SUPPORTED.items():
        version = importlib.metadata.version(package)
        if not version.startswith(series):
            return f"{package} {version} is not the supported {series}x series"
    for extension in schema.get_extensions():
        cls = type(extension)
        for hook in ("resolve", "get_results", "on_stream_result"):
            if getattr(cls, hook) is not getattr(SchemaExtension, hook):
                return f"extension {cls.__name__} implements {hook}, which runs per subscriber"
    return None


class _ViewerFieldFinder(Visitor):
    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.found = False

    def enter_field(self, *_args):
        field = self.type_info.get_field_def()
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF) if field else None
        if definition is not None and definition.metadata.get(VIEWER_DEPENDENT):
            self.found = True
            return self.BREAK
        return None


def selects_viewer_dependent(schema: GraphQLSchema, document: DocumentNode) -> bool:
    type_info = TypeInfo(schema)
    finder = _ViewerFieldFinder(type_info)
    visit(document, TypeInfoVisitor(type_info, finder))
    return finder.found


class Rendered:
    """One event's result for one shape, encoded once per protocol; frames cached per operation id."""

    __slots__ = ("_payload", "_encode", "_parts", "_frames")

    def __init__(self, payload: dict, encode: Callable[[object], str]) -> None:
        self._payload = payload
        self._encode = encode
        self._parts: dict[str, tuple[bytes, bytes]] = {}
        self._frames: dict[tuple[str, bytes], bytes] = {}

    def _split(self, protocol: str) -> tuple[bytes, bytes]:
        if protocol == GRAPHQL_TRANSPORT_WS_PROTOCOL:
            message = {"id": _SENTINEL, "type": "next", "payload": self._payload}
        else:
            message = {"type": "data", "id": _SENTINEL, "payload": self._payload}
        text = self._encode(message)
        marker = self._encode(_SENTINEL)
        # The id precedes the payload, so the first occurrence is the id even if a title happens
        # to contain the sentinel.
        at = text.index(marker)
        return text[:at].encode(), text[at + len(marker) :].encode()

    def frame(self, protocol: str, encoded_id: bytes) -> bytes:
        """The complete WebSocket frame strawberry would have sent this operation."""
        key = (protocol, encoded_id)
        frame = self._frames.get(key)
        if frame is None:
            parts = self._parts.get(protocol)
            if parts is None:
                parts = self._parts[protocol] = self._split(protocol)
            prefix, suffix = parts
            frame = b"".join((frame_header(len(prefix) + len(encoded_id) + len(suffix)), prefix, encoded_id, suffix))
            self._frames[key] = frame
        return frame


class Shape:
    """Subscribers whose results cannot differ, and the one executor that produces them."""

    __slots__ = ("schema", "executor", "to_source", "encode", "kinds", "delivered", "subscribers")

    def __init__(
        self,
        *,
        schema: strawberry.Schema,
        document: DocumentNode,
        address: OperationAddress,
        context: SharedContext,
        to_source: Callable[[Any], Any],
        encode: Callable[[object], str],
        kinds: frozenset[str],
        delivered,
    ) -> None:
        executor = schema.execution_context_class.build(
            schema._schema,
            document,
            None,
            context,
            json.loads(address.variables),
            address.operation_name,
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
        self.subscribers: dict = {}  # an insertion-ordered set, maintained by the hub

    async def render(self, event) -> Rendered:
        """Execute the operation once for this event, exactly as strawberry would per subscriber."""
        result = execute_subscription_event(self.executor.build_per_event_executor(self.to_source(event)))
        if isawaitable(result):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            self.schema._process_errors(result.errors, None)
            payload["errors"] = [error.formatted for error in result.errors]
        return Rendered(payload, self.encode)


class Target:
    """What the hub needs to write one subscriber's frames, and to find or make its shape."""

    __slots__ = ("key", "wire", "protocol", "encoded_id", "_make")

    def __init__(self, key, wire, protocol: str, encoded_id: bytes, make) -> None:
        self.key = key
        self.wire = wire
        self.protocol = protocol
        self.encoded_id = encoded_id
        self._make = make

    def make_shape(self, kinds: frozenset[str]) -> Shape:
        return self._make(kinds)


def target(info: Info, *, to_source: Callable[[Any], Any], delivered) -> Target | None:
    """This subscription's direct-write target, or None if it must take the plain path (not on
    Daphne, not a WebSocket operation, or a schema whose results cannot be shared)."""
    address = current_operation()
    context = info.context
    if address is None or not isinstance(context, dict):
        return None
    consumer = context["ws"]
    wire = wire_of(consumer.scope)
    schema = info.schema
    if wire is None or not wire.uncompressed or unsupported_reason(schema) is not None:
        return None
    raw = info._raw_info
    document = DocumentNode(definitions=(raw.operation, *raw.fragments.values()))
    who = None
    if _selects_viewer_dependent(schema, address.query, address.operation_name, document):
        user = consumer.scope.get("user")
        who = viewer_key(user)
        shared_context = SharedContext(user)
    else:
        shared_context = SharedContext()
    encode = consumer.encode_json
    key = (id(schema), address.query, address.operation_name, address.variables, who, type(consumer))
    encoded_id = encode(address.id)
    if not isinstance(encoded_id, str):
        return None  # a consumer that sends binary JSON: not what Rendered builds

    def make(kinds: frozenset[str]) -> Shape:
        return Shape(
            schema=schema,
            document=document,
            address=address,
            context=shared_context,
            to_source=to_source,
            encode=encode,
            kinds=kinds,
            delivered=delivered,
        )

    return Target(key, wire, address.protocol, encoded_id.encode(), make)


_viewer_dependent_documents: dict[tuple, bool] = {}


def _selects_viewer_dependent(schema, query: str, operation_name: str | None, document: DocumentNode) -> bool:
    key = (id(schema), query, operation_name)
    found = _viewer_dependent_documents.get(key)
    if found is None:
        if len(_viewer_dependent_documents) > 4096:  # a bound, not a policy: recomputing is cheap
            _viewer_dependent_documents.clear()
        found = _viewer_dependent_documents[key] = selects_viewer_dependent(schema._schema, document)
    return found
