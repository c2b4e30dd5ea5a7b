"""The users the tests log in as.

STAFF is the staff user a local postwire has out of the box: devstack's (devstack/stack.py, where
it is written once), which docker-compose.yml's POSTWIRE_BOOTSTRAP_USERNAME / _PASSWORD defaults
and the load tester's --username / --password defaults repeat; the compose tier logging in as it
checks that they agree. The stack tiers also pass it explicitly to the stacks they start.
"""

from __future__ import annotations

import uuid

from devstack.stack import STAFF_PASSWORD, STAFF_USERNAME
from tests.support.client import GraphQLHttp

STAFF = (STAFF_USERNAME, STAFF_PASSWORD)

PASSWORD = "a-long-password-123"  # for the users the tests create

# Run by `manage.py shell -c` in a running stack (devstack.Stack.manage).
CREATE_USER = """
from django.contrib.auth.models import User
from server.app.blog.permissions import publisher_permissions
u = User.objects.create_user({username!r}, password={password!r}, is_staff={staff})
if {perm}:
    u.user_permissions.add(*publisher_permissions())
"""


def create_user(
    stack, *, staff: bool, perm: bool, username: str | None = None, password: str = PASSWORD
) -> tuple[str, str]:
    """A user in a running devstack.Stack's database, staff or not, with the publish permission
    or not. Returns (username, password)."""
    username = username or f"user-{uuid.uuid4().hex[:8]}"
    stack.manage("shell", "-c", CREATE_USER.format(username=username, password=password, staff=staff, perm=perm))
    return username, password


def staff_client(base_url: str) -> GraphQLHttp:
    """A GraphQL-over-HTTP client logged in as STAFF."""
    client = GraphQLHttp(base_url)
    client.login(*STAFF)
    return client
