"""The compose tier: the real docker-compose.yml, one project per session, on a real Docker engine.

Build and `up` happen once (the first build of the postwire images takes about a minute; later
ones are cache hits); the tests then exercise the running project through its published nginx
port only, and the last test tears it down and checks nothing is left. Without a Docker engine
or the stand-in images every test fails and says why: this tier is never skipped.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.compose.project import REPO, ComposeError, ComposeProject, why_no_docker
from tests.support.client import GraphQLHttp

STAFF = ("admin", "postwire-admin")  # the compose file's default bootstrap user
EXPECTED = {"postgres": 1, "redis": 1, "migrate": 1, "api": 2, "ws": 3, "nginx": 1}
ARTIFACTS = REPO / "artifacts"

# Figures printed at the end of the run (pytest_terminal_summary below).
REPORT: dict[str, str] = {}


@pytest.fixture(scope="session")
def compose(tmp_path_factory) -> ComposeProject:
    why = why_no_docker()
    if why:
        pytest.fail(f"the compose tier needs a Docker engine and docker-compose: {why}. "
                    f"Start the engine with `bash .ci/docker-engine.sh` (root).", pytrace=False)
    try:
        project = ComposeProject(tmp_path_factory.mktemp("compose"))
    except ComposeError as exc:
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
    except ComposeError as exc:
        problem = f"the compose project did not come up: {exc}"
    if problem:
        try:
            _teardown(project)
        except ComposeError as exc:
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
    client = GraphQLHttp(compose.http_url)
    client.login(*STAFF)
    return client


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("compose tier")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key:>14}: {value}")


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
