"""Tests of a fast path (server.compat), marked `@pytest.mark.fast_path("name", ...)`.

On the supported lock (requirements-test.lock) every fast path must be on: a test of one that
declined fails, naming the reason, so a lock update that breaks a probe cannot pass unnoticed.
On the newest lock (POSTWIRE_TEST_LOCK=newest, bin/test's second run) a fast path may decline:
that is what the lock is there to show. A marked test of a declined fast path then checks the
decline instead (a reason, and the node's metric at 0), and the run's summary lists every fast
path that declined; the public path it falls back to is what the rest of the suite runs.
"""

from __future__ import annotations

import os

import pytest

NEWEST = os.environ.get("POSTWIRE_TEST_LOCK") == "newest"
_declined: dict[str, str] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "fast_path(*names): tests a fast path of server.compat")


def _declined_of(item) -> dict[str, str]:
    from server import compat

    names = [name for mark in item.iter_markers("fast_path") for name in mark.args]
    unknown = [name for name in names if name not in compat.FAST_PATHS]
    if unknown:
        pytest.fail(f"{item.nodeid} marks unknown fast paths {unknown}", pytrace=False)
    return {name: reason for name in names if (reason := compat.decision(name)) is not None}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    declined = _declined_of(pyfuncitem)
    if not declined:
        return None
    if not NEWEST:
        pytest.fail(
            f"fast path(s) declined on the supported lock: {declined}. Re-check server/compat against "
            "the installed releases (docs/compat.md says how), or fix the lock.",
            pytrace=False,
        )
    _assert_reported(declined)
    _declined.update(declined)
    return True  # the declined fast path's public path is what the rest of the suite runs


def _assert_reported(declined: dict[str, str]) -> None:
    from prometheus_client import REGISTRY

    import server.asgi  # noqa: F401  (the node's start-up report: one line each, and the metric)

    for name, reason in declined.items():
        assert reason.strip(), f"fast path {name} declined without a reason"
        assert REGISTRY.get_sample_value("postwire_fast_path", {"component": name}) == 0, name


def pytest_terminal_summary(terminalreporter):
    if _declined:
        terminalreporter.section("fast paths declined on this lock (their public paths ran)")
        for name, reason in sorted(_declined.items()):
            terminalreporter.write_line(f"{name}: {reason}")
