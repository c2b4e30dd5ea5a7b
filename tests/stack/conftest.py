"""The stack tier: the real processes on loopback (devstack), clients through nginx only."""

import os
import uuid

import pytest

from devstack.stack import Stack
from tests.support.client import GraphQLHttp

pytestmark = pytest.mark.stack

STAFF = ("admin", "postwire-admin")

CREATE_USER = """
from django.contrib.auth.models import Permission, User
u = User.objects.create_user({username!r}, password={password!r}, is_staff={staff})
if {perm}:
    u.user_permissions.add(*Permission.objects.filter(codename__in=["publish_post", "view_post"]))
"""


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stack")
    # Default hub timings: the periodic catch-up (30 s) is longer than any wait in these tests,
    # so every delivery they see is the live path.
    # A short connection_init timeout, so the tests that wait for it do not wait long.
    with Stack(ws_nodes=3, api_nodes=2, run_dir=run_dir, staff_username=STAFF[0], staff_password=STAFF[1],
               extra_env={"POSTWIRE_WS_CONNECTION_INIT_TIMEOUT": "2"}) as running:
        yield running
    if os.environ.get("KEEP_STACK_LOGS") is None:
        running.cleanup()


@pytest.fixture
def staff(stack) -> GraphQLHttp:
    client = GraphQLHttp(stack.http_url)
    client.login(*STAFF)
    return client


@pytest.fixture(scope="session")
def make_user(stack):
    def make(*, staff: bool, perm: bool) -> tuple[str, str]:
        username, password = f"user-{uuid.uuid4().hex[:8]}", "a-long-password-123"
        stack.manage("shell", "-c", CREATE_USER.format(username=username, password=password, staff=staff, perm=perm))
        return username, password

    return make
