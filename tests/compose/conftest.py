"""The compose tier: the real docker-compose.yml, one project per session, on a real Docker engine.

Build and `up` happen once (the first build of the postwire images takes about a minute; later
ones are cache hits); the tests then exercise the running project through its published nginx
port only, and the last test tears it down and checks nothing is left. Without a Docker engine
or the stand-in images every test fails and says why: this tier is never skipped.
"""

from __future__ import annotations

import time

import pytest

from tests.compose.project import ARTIFACTS, EXPECTED, REPORT, ComposeProject
from tests.support.client import GraphQLHttp
from tests.support.docker import DockerError, why_no_docker
from tests.support.users import staff_client


@pytest.fixture(scope="session")
def compose(tmp_path_factory) -> ComposeProject:
    why = why_no_docker(compose=True)
    if why:
        pytest.fail(
            f"the compose tier needs a Docker engine and docker-compose: {why}. "
            f"Start the engine with `bash .ci/docker-engine.sh` (root).",
            pytrace=False,
        )
    try:
        project = ComposeProject(tmp_path_factory.mktemp("compose"))
    except DockerError as exc:
        problem = str(exc)
    else:
        problem = None
    if problem:
        pytest.fail(problem, pytrace=False)
    REPORT["project"] = f"{project.name} on 127.0.0.1:{project.port}"
    try:
        start = time.monotonic()
        project.compose("build", timeout=1800)
        REPORT["build"] = f"{time.monotonic() - start:.1f} s (docker-compose build: api image ×3 services, nginx)"
        start = time.monotonic()
        project.compose("up", "-d", timeout=600)
        up_returned = time.monotonic() - start
        project.wait_healthy(EXPECTED)
        healthy = time.monotonic() - start
        REPORT["up → healthy"] = f"{healthy:.1f} s (`up -d` returned after {up_returned:.1f} s)"
    except DockerError as exc:
        problem = f"the compose project did not come up: {exc}"
    if problem:
        try:
            _teardown(project)
        except DockerError as exc:
            problem += f"\n(and tearing it down failed too: {exc})"
        pytest.fail(problem, pytrace=False)
    yield project
    _teardown(project)


def _teardown(project: ComposeProject) -> None:
    """Safety net (the last test tears down and asserts): keep the logs, then remove everything."""
    if project.down_done:
        return
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "compose-logs.txt").write_text(project.logs(tail=2000))
    finally:
        project.down()


@pytest.fixture
def staff(compose) -> GraphQLHttp:
    return staff_client(compose.http_url)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("compose tier")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key:>14}: {value}")
