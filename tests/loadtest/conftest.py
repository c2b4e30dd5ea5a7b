"""The load tester against a real local stack (devstack: nginx, gunicorn, 2 Daphne nodes,
PostgreSQL, Redis), driven through its command line, judged by the numbers it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import LOADTEST_SRC  # the CLI subprocess gets the same path
from tests.support.stacks import running_stack
from tests.support.users import STAFF

# The channel layer the stack runs with: the product's default (core) unless overridden, e.g.
# LOADTEST_TEST_CHANNEL_LAYER=pubsub.
CHANNEL_LAYER = os.environ.get("LOADTEST_TEST_CHANNEL_LAYER", "core")


@pytest.fixture(scope="module")
def lt_stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("loadtest-stack")
    with running_stack(run_dir, ws_nodes=2, api_nodes=1, extra_env={"CHANNEL_LAYER": CHANNEL_LAYER}) as running:
        yield running


@dataclass
class Outcome:
    returncode: int
    results: dict
    out_dir: Path
    stdout: str
    stderr: str

    @property
    def deliveries(self) -> dict:
        return self.results["deliveries"]

    def publish(self, n: int) -> dict:
        return next(p for p in self.results["per_publish"] if p["n"] == n)


@pytest.fixture
def loadtest(lt_stack, tmp_path):
    """Run `python -m postwire_loadtest` against the stack; returns its exit code and results.json."""

    def run(*args: str, url: str | None = None, timeout: float = 120) -> Outcome:
        out_dir = tmp_path / "results"
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(LOADTEST_SRC), os.environ.get("PYTHONPATH")]))
        )
        # The password comes from the environment, as in a Kubernetes Job.
        env["POSTWIRE_PASSWORD"] = STAFF[1]
        argv = [
            sys.executable,
            "-m",
            "postwire_loadtest",
            "--url",
            url or lt_stack.http_url,
            "--username",
            STAFF[0],
            "--out",
            str(out_dir),
            "--progress",
            "plain",
            *args,
        ]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        results_file = out_dir / "results.json"
        assert results_file.exists(), f"no results.json\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return Outcome(proc.returncode, json.loads(results_file.read_text()), out_dir, proc.stdout, proc.stderr)

    return run
