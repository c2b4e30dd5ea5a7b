"""Who may publish: the one place the blog's permissions are named.

Publishing (services.post_publish) needs staff status and both PUBLISHER_PERMISSIONS: the
blog's own publish_post (declared in Post.Meta.permissions) and Django's view_post, to see the
draft being published. The bootstrapped staff user and the tests grant exactly these.
(Migration 0001 keeps its own copy of the codename: migrations are frozen history.)
"""

from __future__ import annotations

from django.db.models import Q

PUBLISH_POST_CODENAME = "publish_post"
PUBLISH_POST = f"blog.{PUBLISH_POST_CODENAME}"
PUBLISHER_PERMISSIONS = (PUBLISH_POST, "blog.view_post")  # "app_label.codename", as user.has_perms takes them


def publisher_permissions():
    """The Permission rows of PUBLISHER_PERMISSIONS, to grant them: `user.user_permissions.add(*...)`."""
    from django.contrib.auth.models import Permission  # not at import: models.py imports this module

    match = Q(pk__in=[])
    for name in PUBLISHER_PERMISSIONS:
        app_label, codename = name.split(".")
        match |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(match)
