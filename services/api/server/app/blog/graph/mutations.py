"""Mutations: each resolver checks who is asking, then calls one function of blog.services."""

import uuid

import strawberry
import strawberry_django
from django.core.exceptions import ValidationError
from strawberry import relay
from strawberry.types import Info
from strawberry_django.permissions import IsAuthenticated

from server.app.blog import services
from server.app.blog.graph.types import Post, PostCreateInput, PostUpdateInput


def _post_uuid(gid: relay.GlobalID) -> uuid.UUID:
    if gid.type_name != "Post":
        raise ValidationError({"id": f"Expected a Post id, got a {gid.type_name} id."})
    try:
        return uuid.UUID(gid.node_id)
    except ValueError as exc:
        raise ValidationError({"id": "Malformed Post id."}) from exc


def _user(info: Info):
    return info.context.request.user


@strawberry.type
class Mutation:
    @strawberry_django.mutation(handle_django_errors=True, extensions=[IsAuthenticated()])
    def create_post(self, info: Info, input: PostCreateInput) -> Post:
        return services.post_create(author=_user(info), title=input.title, content=input.content)

    @strawberry_django.mutation(handle_django_errors=True, extensions=[IsAuthenticated()])
    def update_post(self, info: Info, input: PostUpdateInput) -> Post:
        return services.post_update(
            post_id=_post_uuid(input.id), user=_user(info), title=input.title, content=input.content
        )

    @strawberry_django.input_mutation(handle_django_errors=True, extensions=[IsAuthenticated()])
    def delete_post(self, info: Info, id: relay.GlobalID) -> Post:
        return services.post_delete(post_id=_post_uuid(id), user=_user(info))

    # Who may publish is blog.services.post_publish's rule (staff + blog.publish_post and view_post);
    # its PermissionDenied comes back as an OperationInfo of kind PERMISSION. A second check here
    # (strawberry_django's HasPerm + IsStaff) would cost a third of the request and say less.
    @strawberry_django.input_mutation(handle_django_errors=True)
    def publish_post(self, info: Info, id: relay.GlobalID) -> Post:
        return services.post_publish(post_id=_post_uuid(id), user=_user(info))
