"""Every upstream function a compat module copied, or whose internal state a fast path relies on,
is the source it was checked against (SOURCES in each module: dotted path -> fingerprint).

When an upgrade changes one, this fails naming the function: read the upstream diff, carry the
change into the copy (or decide the reliance still holds), then update the fingerprint. Until
then the fast paths that depend on it decline at start (and on the newest lock, that decline is
what this checks instead).
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import server.compat
from server import compat
from server.compat import checks
from tests.plugins.fast_paths import NEWEST


def _sources():
    for module in pkgutil.iter_modules(server.compat.__path__):
        sources = getattr(importlib.import_module(f"server.compat.{module.name}"), "SOURCES", None)
        for path, expected in (sources or {}).items():
            yield pytest.param(path, expected, id=path)


@pytest.mark.parametrize(("path", "expected"), list(_sources()))
def test_the_installed_upstream_source_is_the_one_checked(path, expected):
    actual = checks.fingerprint(path)
    if actual == expected:
        return
    declined = {name: reason for name, reason in compat.status().items() if reason and path in reason}
    if NEWEST:
        # On the newest releases a changed source must turn off what relies on it, saying so.
        assert declined, f"{path} changed ({actual}) but no fast path declined"
        return
    pytest.fail(
        f"{path} differs from the source server/compat was checked against ({actual} != {expected}): "
        "read the upstream change, carry it into the copy or re-check the reliance, then update SOURCES",
        pytrace=False,
    )


def test_a_changed_source_is_reported_by_the_probe():
    """The check a probe runs (checks.unchanged) names the function that differs."""
    path = "server.compat.checks.fingerprint"
    assert checks.unchanged({path: checks.fingerprint(path)}) is None
    reason = checks.unchanged({path: "0" * 16})
    assert reason is not None and path in reason and "differs" in reason
