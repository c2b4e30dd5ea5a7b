"""Production mode refuses to start with a missing secret; development has safe defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

API_DIR = Path(__file__).resolve().parents[2] / "services" / "api"


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, with only `env` of the project's variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "POSTWIRE_", "DATABASE_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=API_DIR, env={**clean, "DJANGO_SETTINGS_MODULE": "server.settings", **env},
        capture_output=True, text=True,
    )


def load_settings(**env) -> subprocess.CompletedProcess:
    return run_python("import django; django.setup(); from django.conf import settings; print(settings.DEBUG)", **env)


PRODUCTION = {
    "DJANGO_SECRET_KEY": "x" * 50,
    "DATABASE_URL": "postgres://u:p@db/postwire",
    "REDIS_URL": "redis://redis:6379/0",
    "DJANGO_ALLOWED_HOSTS": "example.com",
}


@pytest.mark.parametrize("missing", sorted(PRODUCTION))
def test_production_fails_loudly_without_a_required_variable(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_production_with_everything_set_starts_with_debug_off():
    result = load_settings(**PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_development_runs_with_defaults_and_debug_still_off():
    result = load_settings(POSTWIRE_ENV="development")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_sqlite_is_refused():
    result = load_settings(**{**PRODUCTION, "DATABASE_URL": "sqlite:///db.sqlite3"})
    assert result.returncode != 0 and "PostgreSQL" in result.stderr


def _asgi_gc_thresholds(**env) -> subprocess.CompletedProcess:
    code = "import gc, server.asgi; print(gc.get_threshold(), gc.get_freeze_count() > 0)"
    return run_python(code, POSTWIRE_ENV="development", **env)


def test_daphne_processes_tune_the_garbage_collector():
    tuned = _asgi_gc_thresholds()
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stdout.split("\n")[-2] == "(50000, 20, 100) True"
    python_default = _asgi_gc_thresholds(POSTWIRE_WS_GC_THRESHOLDS="")
    assert python_default.stdout.split("\n")[-2] == "(700, 10, 10) False"
    for wrong_value in ("50000,20", "1,a,2", "1,2,3,4"):
        wrong = _asgi_gc_thresholds(POSTWIRE_WS_GC_THRESHOLDS=wrong_value)
        assert wrong.returncode != 0 and "POSTWIRE_WS_GC_THRESHOLDS" in wrong.stderr


def test_redis_sentinels_replace_the_address_for_the_layer():
    code = ("import django, json; django.setup(); from django.conf import settings as s; "
            "h = s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]; "
            "print(json.dumps([h.get('address'), h['sentinels'], h['master_name'], h['db'], h['password']]))")
    result = run_python(code, **{**PRODUCTION, "REDIS_URL": "redis://:p%40ss@ignored:6379/3",
                                 "REDIS_SENTINELS": "s1:26379, s2:26380", "REDIS_SENTINEL_MASTER": "main"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[null, [["s1", 26379], ["s2", 26380]], "main", 3, "p@ss"]'


def _role_env(role: str, tmp_path, **env) -> str:
    """DB_CONN_MAX_AGE as `bin/postwire <role>` hands it to its server (a stub on PATH)."""
    for server in ("python", "gunicorn"):
        stub = tmp_path / server
        stub.write_text('#!/bin/sh\necho "DB_CONN_MAX_AGE=${DB_CONN_MAX_AGE-unset}"\n')
        stub.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DB_CONN_MAX_AGE")}
    result = subprocess.run([str(API_DIR / "bin" / "postwire"), role], env={**clean, **env,
                            "PATH": f"{tmp_path}:{os.environ['PATH']}"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_daphne_keeps_no_persistent_database_connections(tmp_path):
    # Django advises against CONN_MAX_AGE under ASGI; gunicorn (WSGI) keeps its 60 s default.
    assert _role_env("ws", tmp_path, DB_CONN_MAX_AGE="60") == "DB_CONN_MAX_AGE=0"
    assert _role_env("ws", tmp_path, DB_CONN_MAX_AGE_WS="30") == "DB_CONN_MAX_AGE=30"
    assert _role_env("api", tmp_path, DB_CONN_MAX_AGE="60") == "DB_CONN_MAX_AGE=60"
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['CONN_MAX_AGE'])"
    assert run_python(code, POSTWIRE_ENV="development", DB_CONN_MAX_AGE="0").stdout.strip() == "0"
    assert run_python(code, POSTWIRE_ENV="development").stdout.strip() == "60"


def test_login_throttle_settings_have_safe_defaults():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.LOGIN_MAX_FAILURES, s.LOGIN_MAX_FAILURES_PER_IP, s.LOGIN_LOCKOUT_SECONDS, s.BOOTSTRAP_RESET_PASSWORD)")
    assert run_python(code, POSTWIRE_ENV="development").stdout.strip() == "5 20 300 False"
    refused = run_python(code, POSTWIRE_ENV="development", POSTWIRE_LOGIN_LOCKOUT_SECONDS="0")
    assert refused.returncode != 0 and "POSTWIRE_LOGIN_LOCKOUT_SECONDS" in refused.stderr


def test_the_hub_rejoins_within_a_short_group_expiry_unless_told_otherwise():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.HUB_REJOIN_SECONDS)"
    # Empty is what compose passes when nothing is set: computed from the expiry.
    assert run_python(code, **PRODUCTION, CHANNEL_GROUP_EXPIRY="60", POSTWIRE_HUB_REJOIN_SECONDS="").stdout.strip() == "15.0"
    assert run_python(code, **PRODUCTION, CHANNEL_GROUP_EXPIRY="60", POSTWIRE_HUB_REJOIN_SECONDS="5").stdout.strip() == "5.0"
