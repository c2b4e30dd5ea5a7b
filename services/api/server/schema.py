"""Two schemas, as in the Strawberry + Django Channels tutorial postwire started from:
strawberry_django's resolvers expect an HTTP request in `info.context`, which WebSocket contexts
(a dict) lack, so mutations and model queries are served over HTTP only. The HTTP schema still
*declares* the subscriptions, so GraphiQL at /graphql can validate and run them (nginx sends its
WebSocket upgrade to Daphne)."""

from collections.abc import AsyncGenerator

import strawberry
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationType,
    ValidationRule,
)
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.utils.logging import StrawberryLogger
from strawberry_django.optimizer import DjangoOptimizerExtension

from server import errors
from server.app.authentication.graph import mutations as auth_mutations
from server.app.authentication.graph import queries as auth_queries
from server.app.blog.graph import mutations as blog_mutations
from server.app.blog.graph import queries as blog_queries
from server.app.blog.graph import subscriptions as blog_subscriptions
from server.app.blog.graph.types import SCALAR_MAP


@strawberry.type
class ServerQuery:
    @strawberry.field(description="Name of the node serving this request (gunicorn or Daphne).")
    def server_node(self) -> str:
        return settings.NODE_NAME


@strawberry.type
class ServerSubscription:
    @strawberry.subscription(
        description="Yields the name of the Daphne node holding this WebSocket once, then completes. "
        "(The legacy graphql-ws protocol carries subscriptions only, so this is not a query.)"
    )
    async def server_node(self) -> AsyncGenerator[str, None]:
        yield settings.NODE_NAME


query = merge_types("Query", (ServerQuery, auth_queries.Query, blog_queries.Query))
mutation = merge_types("Mutation", (auth_mutations.Mutation, blog_mutations.Mutation))
subscription = merge_types("Subscription", (ServerSubscription, blog_subscriptions.Subscription))

DOCUMENT_CACHE_SIZE = 1024


class RootFieldLimit(ValidationRule):
    """At most GRAPHQL_MAX_ROOT_FIELDS fields at the top of an operation, fragments included: each
    root field is a separate resolver (and, for lists, a separate query)."""

    def enter_operation_definition(self, node, *_args):
        count = self._count(node.selection_set, set())
        if count > settings.GRAPHQL_MAX_ROOT_FIELDS:
            self.report_error(
                GraphQLError(f"{count} root fields requested. Allowed: {settings.GRAPHQL_MAX_ROOT_FIELDS}", node)
            )

    def _count(self, selection_set, seen: set) -> int:
        count = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                count += 1
            elif isinstance(selection, InlineFragmentNode):
                count += self._count(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                fragment = self.context.get_fragment(selection.name.value)
                if fragment is not None:
                    count += self._count(fragment.selection_set, seen)
        return count


# Rule classes built once for the process (strawberry's QueryDepthLimiter and MaxAliasesLimiter
# build new ones per request), so that validation results can be cached: clients send the same
# few documents over and over, and validating a subscription was the dearest part of a
# WebSocket's connect. Introspection's own depth is bounded by graphql-core's
# MaxIntrospectionDepthRule, one of the rules every document is validated with.
LIMITS = [
    query_depth_limiter.create_validator(max_depth=settings.GRAPHQL_MAX_DEPTH, should_ignore=None),
    max_aliases.create_validator(settings.GRAPHQL_MAX_ALIASES),
    RootFieldLimit,
    *([] if settings.GRAPHQL_INTROSPECTION else [NoSchemaIntrospectionCustomRule]),
]


class CachedParse(ParserCache):
    """ParserCache that lets a syntax error reach the client as a GraphQL error.

    ParserCache parses inside its `on_parse` hook, where strawberry's streaming path (every
    WebSocket operation) does not catch the error: the operation would end in a bare `complete`
    instead of the protocol's 4400 "Syntax Error: ...". On failure the document is left unset,
    so strawberry parses it again itself, inside its own error handling."""

    def on_parse(self):
        try:
            self.execution_context.graphql_document = self.cached_parse_document(
                self.execution_context.query, **self.execution_context.parse_options
            )
        except GraphQLError:
            pass
        yield


def _cached_documents() -> list:
    # The token limit is a parse option, so it is part of the parse cache's key.
    return [
        lambda: MaxTokensLimiter(settings.GRAPHQL_MAX_TOKENS),
        lambda: CachedParse(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
    ]


class SubscriptionsNeedAWebSocket(ValidationRule):
    """The HTTP schema declares subscriptions (for GraphiQL) but cannot stream them: say so,
    instead of the "Cannot return null" an HTTP execution would produce."""

    def enter_operation_definition(self, node, *_args):
        if node.operation == OperationType.SUBSCRIPTION:
            self.report_error(
                GraphQLError(
                    "Subscriptions are served over WebSocket: connect to /wsgraphql (graphql-transport-ws "
                    "or graphql-ws), or upgrade /graphql to a WebSocket as GraphiQL does.",
                    node,
                )
            )


class Schema(strawberry.Schema):
    """strawberry logs every error at ERROR, with the traceback of the exception behind it. An
    error the client caused and is told about (a wrong password, a login lockout, a refused
    permission) is no server fault: INFO, one line, no traceback."""

    CLIENT_ERRORS = (ValidationError, PermissionDenied)

    def process_errors(self, errors, execution_context=None):
        for error in errors:
            if isinstance(error.original_error, self.CLIENT_ERRORS):
                StrawberryLogger.logger.info("refused: %s (path %s)", error.message, error.path)
            else:
                StrawberryLogger.error(error, execution_context)


def _mask_outages() -> MaskErrors:
    """A database or Redis failure inside an operation: say it is temporary (server/errors.py)."""
    return MaskErrors(
        should_mask_error=lambda error: errors.is_outage(error.original_error), error_message=errors.OUTAGE_MESSAGE
    )


schema = Schema(
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    query=query,
    mutation=mutation,
    subscription=subscription,
    extensions=[
        lambda: AddValidationRules([*LIMITS, SubscriptionsNeedAWebSocket]),
        DjangoOptimizerExtension,
        _mask_outages,
        *_cached_documents(),
    ],
)
ws_schema = Schema(
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    query=ServerQuery,
    subscription=subscription,
    # No MaskErrors here: it hooks every streamed result, which would turn the shared fan-out
    # off (server.realtime.shapes.unsupported_reason); the subscription resolvers say an outage
    # themselves (server/app/blog/graph/subscriptions.py).
    extensions=[lambda: AddValidationRules(LIMITS), *_cached_documents()],
)
