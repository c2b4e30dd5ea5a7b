"""Two schemas, as in the seed tutorial: strawberry_django's resolvers expect an HTTP request in
`info.context`, which WebSocket contexts (a dict) lack, so mutations and model queries are served
over HTTP only. The HTTP schema still *declares* the subscriptions, so GraphiQL at /graphql can
validate and run them (nginx sends its WebSocket upgrade to Daphne)."""

from collections.abc import AsyncGenerator

import strawberry
from django.conf import settings
from graphql import GraphQLError, OperationType, ValidationRule
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.extensions.query_depth_limiter import create_validator
from strawberry.tools import merge_types
from strawberry_django.optimizer import DjangoOptimizerExtension

from server.app.authentication.graph import mutations as auth_mutations
from server.app.authentication.graph import queries as auth_queries
from server.app.blog.graph import mutations as blog_mutations
from server.app.blog.graph import queries as blog_queries
from server.app.blog.graph import subscriptions as blog_subscriptions


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

# One rule class for the process (QueryDepthLimiter would build a new one per request), so that
# validation results can be cached: clients send the same few documents over and over, and
# validating a subscription cost more than anything else in a WebSocket's connect (profiled).
DepthLimit = create_validator(max_depth=10, should_ignore=None)
DOCUMENT_CACHE_SIZE = 1024


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
    return [lambda: CachedParse(maxsize=DOCUMENT_CACHE_SIZE), lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE)]


class SubscriptionsNeedAWebSocket(ValidationRule):
    """The HTTP schema declares subscriptions (for GraphiQL) but cannot stream them: say so,
    instead of the "Cannot return null" an HTTP execution would produce."""

    def enter_operation_definition(self, node, *_args):
        if node.operation == OperationType.SUBSCRIPTION:
            self.report_error(GraphQLError(
                "Subscriptions are served over WebSocket: connect to /wsgraphql (graphql-transport-ws "
                "or graphql-ws), or upgrade /graphql to a WebSocket as GraphiQL does.",
                node,
            ))


schema = strawberry.Schema(
    query=query,
    mutation=mutation,
    subscription=subscription,
    extensions=[
        lambda: AddValidationRules([DepthLimit, SubscriptionsNeedAWebSocket]),
        DjangoOptimizerExtension,
        *_cached_documents(),
    ],
)
ws_schema = strawberry.Schema(
    query=ServerQuery, subscription=subscription,
    extensions=[lambda: AddValidationRules([DepthLimit]), *_cached_documents()],
)
