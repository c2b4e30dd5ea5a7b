"""Real PostgreSQL and Redis for the whole test session, ready before Django is configured.

If DATABASE_URL and REDIS_URL are set, they are used as they are. Otherwise a throwaway
PostgreSQL cluster and Redis server start on free loopback ports (devstack.backing) and stop at
the end. There is no SQLite or in-memory fallback: if the servers cannot start, the run fails
with the reason.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_started = []
_run_dir = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _run_dir
    os.environ.setdefault("POSTWIRE_ENV", "development")
    os.environ.setdefault("DJANGO_SECRET_KEY", "tests-insecure-key")
    os.environ.setdefault("POSTWIRE_NODE_NAME", "pytest")
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return
    from devstack.backing import Postgres, Redis

    _run_dir = Path(tempfile.mkdtemp(prefix="postwire-tests-"))
    if not os.environ.get("DATABASE_URL"):
        pg = Postgres(_run_dir).start()
        _started.append(pg)
        os.environ["DATABASE_URL"] = pg.url
    if not os.environ.get("REDIS_URL"):
        redis = Redis(_run_dir).start()
        _started.append(redis)
        os.environ["REDIS_URL"] = redis.url


def pytest_unconfigure(config):
    for service in reversed(_started):
        service.stop()
    if _run_dir is not None:
        shutil.rmtree(_run_dir, ignore_errors=True)
