"""Prints, at the end of a run, how long each tier took (tests/<tier>/...): setup, call and
teardown of its tests, so the stacks and images its fixtures start are counted where they run."""

from __future__ import annotations

import collections

_seconds: dict[str, float] = collections.defaultdict(float)
_tests: collections.Counter[str] = collections.Counter()


def _tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def pytest_runtest_logreport(report) -> None:
    tier = _tier(report.nodeid)
    _seconds[tier] += report.duration
    if report.when == "call":
        _tests[tier] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if not _seconds:
        return
    terminalreporter.write_sep("-", "time per tier (setup + call + teardown)")
    for tier, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{tier:<10} {_tests[tier]:>4} tests {seconds:>8.1f} s")
