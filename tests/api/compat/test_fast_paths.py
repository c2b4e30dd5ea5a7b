"""The fast paths' decisions (server.compat): on, declined by a probe, or turned off by the
setting; and how a node says so (one log line each, and postwire_fast_path{component})."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from server import compat
from tests.plugins.fast_paths import NEWEST

API = Path(__file__).resolve().parents[3] / "services" / "api"


def run(code: str, **env) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (decisions are made once per process)."""
    clean = {k: v for k, v in os.environ.items() if k != compat.SETTING}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=API, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


REPORT = """
import json, logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
{before}
from server import compat
from prometheus_client import REGISTRY
decisions = compat.report()
compat.report()  # once per process: a second call logs nothing more
gauges = {{name: REGISTRY.get_sample_value("postwire_fast_path", {{"component": name}}) for name in compat.FAST_PATHS}}
print(json.dumps({{"decisions": decisions, "gauges": gauges}}))
"""


def report(before: str = "", **env) -> tuple[dict, dict, list[str]]:
    result = run(REPORT.format(before=before), **env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    return out["decisions"], out["gauges"], result.stderr.splitlines()


def test_every_fast_path_is_on_for_the_releases_it_was_checked_against():
    decisions = compat.status()
    declined = {name: reason for name, reason in decisions.items() if reason}
    if NEWEST:
        assert all(reason.strip() for reason in declined.values()), declined  # each says why
    else:
        assert declined == {}, f"on the supported lock every fast path must be on: {declined}"


def test_a_node_on_releases_it_does_not_know_declines_their_fast_paths_and_says_why_once():
    # Daphne as a release server.compat was never checked against.
    fake_daphne = (
        "import importlib.metadata as md\n"
        "real = md.version\n"
        "md.version = lambda name: '4.9.0' if name == 'daphne' else real(name)"
    )
    decisions, gauges, log = report(before=fake_daphne)
    needs_daphne = {name for name, path in compat.FAST_PATHS.items() if "daphne" in path.upstream}
    assert {name for name, reason in decisions.items() if reason} == needs_daphne
    for name in needs_daphne:
        assert "daphne 4.9.0 is not a release it was checked against (4.2.x)" in decisions[name]
        assert gauges[name] == 0
        warnings = [line for line in log if line.startswith("WARNING") and f"fast path {name} is off" in line]
        assert len(warnings) == 1, (name, log)
        assert compat.FAST_PATHS[name].public_path in warnings[0]  # and what runs instead
    assert all(gauges[name] == 1 for name in set(compat.FAST_PATHS) - needs_daphne)
    assert any(line.startswith("INFO server.compat fast paths on: shared_execution") for line in log), log


def test_the_setting_turns_fast_paths_off_by_name_or_all_at_once():
    decisions, gauges, log = report(POSTWIRE_FAST_PATHS="-sweeps, -keepalive")
    assert {name for name, reason in decisions.items() if reason} == {"sweeps", "keepalive"}
    assert decisions["sweeps"] == "turned off by POSTWIRE_FAST_PATHS" and gauges["sweeps"] == 0
    assert not any(line.startswith("WARNING") for line in log), log  # asked for: INFO, not a warning
    decisions, gauges, _ = report(POSTWIRE_FAST_PATHS="none")
    assert all(reason == "turned off by POSTWIRE_FAST_PATHS" for reason in decisions.values())
    assert set(gauges.values()) == {0}


def test_an_unknown_name_in_the_setting_is_a_warning_not_a_silent_no_op():
    decisions, _, log = report(POSTWIRE_FAST_PATHS="-sweep")
    assert all(reason is None for reason in decisions.values())
    assert any("POSTWIRE_FAST_PATHS names unknown fast paths: sweep" in line for line in log), log


def test_a_probe_that_breaks_declines_its_fast_path_instead_of_stopping_the_node():
    broken = (
        "import server.compat.channels as c\ndef boom():\n    raise RuntimeError('moved')\nc.probe_consumer_loop = boom"
    )
    decisions, gauges, _ = report(before=broken)
    assert decisions["lean_consumer"] == "probe failed: RuntimeError: moved" and gauges["lean_consumer"] == 0
