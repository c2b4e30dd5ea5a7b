"""The stack tier: the real processes on loopback (devstack), clients through nginx only."""

import pytest

from tests.support.client import GraphQLHttp
from tests.support.stacks import running_stack
from tests.support.users import create_user, staff_client

pytestmark = pytest.mark.stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stack")
    # Default hub timings: the periodic catch-up (30 s) is longer than any wait in these tests,
    # so every delivery they see is the live path.
    # A short connection_init timeout, so the tests that wait for it do not wait long.
    with running_stack(
        run_dir, ws_nodes=3, api_nodes=2, extra_env={"POSTWIRE_WS_CONNECTION_INIT_TIMEOUT": "2"}
    ) as running:
        yield running


@pytest.fixture
def staff(stack) -> GraphQLHttp:
    return staff_client(stack.http_url)


@pytest.fixture(scope="session")
def make_user(stack):
    def make(*, staff: bool, perm: bool) -> tuple[str, str]:
        return create_user(stack, staff=staff, perm=perm)

    return make
