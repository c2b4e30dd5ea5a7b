"""`postwire migrate` run by several processes at once (a rollout's api pods, each with its
migrate init container) against one fresh database: they take turns under the advisory lock."""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

POSTWIRE = Path(__file__).resolve().parents[2] / "services" / "api" / "bin" / "postwire"


@pytest.fixture
def fresh_database():
    server = os.environ["DATABASE_URL"]
    name = f"migrate_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_concurrent_migrations_take_turns_and_bootstrap_one_staff_user(fresh_database):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATABASE_URL": fresh_database,
        "POSTWIRE_BOOTSTRAP_USERNAME": "boot",
        "POSTWIRE_BOOTSTRAP_PASSWORD": "a-long-bootstrap-password",
    }
    runs = [
        subprocess.Popen(
            [str(POSTWIRE), "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    # One of them applied the migrations; the others found nothing to do.
    assert sum("Applying " in out for out in outputs) == 1, outputs
    assert sum("No migrations to apply" in out for out in outputs) == 2, outputs
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM auth_user WHERE username = 'boot' AND is_staff").fetchone() == (1,)
