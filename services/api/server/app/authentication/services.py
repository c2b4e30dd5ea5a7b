from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from server.app.blog.permissions import PUBLISHER_PERMISSIONS, publisher_permissions


@transaction.atomic
def ensure_staff_publisher(*, username: str, password: str, email: str = "", reset_password: bool = False):
    """Create (or bring up to date) a staff user who may publish. Idempotent: safe on every deploy.

    The password is set when the user is created, and afterwards only with reset_password: it
    may have been changed since, and every deploy would otherwise put the bootstrap one back."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    user.is_staff = True
    if email:
        user.email = email
    # Only when it changed: a new hash would log that user out of every session.
    if (created or reset_password) and not user.check_password(password):
        user.set_password(password)
    user.save()
    permissions = list(publisher_permissions())
    if len(permissions) != len(PUBLISHER_PERMISSIONS):  # the blog's migrations have not run
        raise Permission.DoesNotExist(f"missing some of {PUBLISHER_PERMISSIONS}: run the migrations first")
    user.user_permissions.add(*permissions)
    return user, created
