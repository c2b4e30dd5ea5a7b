"""Makes a process see other release numbers for some packages, as if an upgrade had installed
releases server.compat was never checked against: POSTWIRE_TEST_RELEASES="daphne=4.9.0,...".
Put this directory first on a process's PYTHONPATH (tests/stack/test_delivery_paths.py does, for
one Daphne node); the code that runs is still the installed one."""

import importlib.metadata
import os

_installed = importlib.metadata.version
_pretended = dict(item.split("=", 1) for item in os.environ.get("POSTWIRE_TEST_RELEASES", "").split(",") if item)


def _version(name: str) -> str:
    return _pretended.get(name) or _installed(name)


importlib.metadata.version = _version
