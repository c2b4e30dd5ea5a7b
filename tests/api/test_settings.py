"""Production mode refuses to start with a missing secret; development has safe defaults; every
default is settings.py's, and .env.example states each one."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
API_DIR = REPO / "services" / "api"
SETTINGS = API_DIR / "server" / "settings.py"
ENV_EXAMPLE = REPO / ".env.example"


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, with only `env` of the project's variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "POSTWIRE_", "DATABASE_", "REDIS_")) and k not in settings_reads()
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=API_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "server.settings", **env},
        capture_output=True,
        text=True,
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
    # Empty keeps this interpreter's own thresholds, whatever they are (CPython's change by version).
    interpreter = run_python("import gc; print(gc.get_threshold())").stdout.strip()
    python_default = _asgi_gc_thresholds(POSTWIRE_WS_GC_THRESHOLDS="")
    assert python_default.stdout.split("\n")[-2] == f"{interpreter} False"
    for wrong_value in ("50000,20", "1,a,2", "1,2,3,4"):
        wrong = _asgi_gc_thresholds(POSTWIRE_WS_GC_THRESHOLDS=wrong_value)
        assert wrong.returncode != 0 and "POSTWIRE_WS_GC_THRESHOLDS" in wrong.stderr


def test_gunicorn_workers_freeze_what_start_up_loaded():
    """The WSGI module loads the URLconf (both schemas) and freezes it: a full collection then
    has only what requests made since to walk through."""
    code = (
        "import gc, sys, server.wsgi; "
        "print('server.schema' in sys.modules, gc.get_freeze_count() > 100_000, gc.get_threshold())"
    )
    result = run_python(code, POSTWIRE_ENV="development")
    assert result.returncode == 0, result.stderr
    interpreter = run_python("import gc; print(gc.get_threshold())").stdout.strip()
    assert result.stdout.split("\n")[-2] == f"True True {interpreter}"  # thresholds left as they are


def test_redis_sentinels_replace_the_address_for_the_layer():
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "h = s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]; "
        "print(json.dumps([h.get('address'), h['sentinels'], h['master_name'], h['db'], h['password']]))"
    )
    result = run_python(
        code,
        **{
            **PRODUCTION,
            "REDIS_URL": "redis://:p%40ss@ignored:6379/3",
            "REDIS_SENTINELS": "s1:26379, s2:26380",
            "REDIS_SENTINEL_MASTER": "main",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[null, [["s1", 26379], ["s2", 26380]], "main", 3, "p@ss"]'


def _role_env(role: str, tmp_path, **env) -> str:
    """DB_CONN_MAX_AGE as `bin/postwire <role>` hands it to its server (a stub on PATH)."""
    for server in ("python", "gunicorn"):
        stub = tmp_path / server
        stub.write_text('#!/bin/sh\necho "DB_CONN_MAX_AGE=${DB_CONN_MAX_AGE-unset}"\n')
        stub.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DB_CONN_MAX_AGE")}
    result = subprocess.run(
        [str(API_DIR / "bin" / "postwire"), role],
        env={**clean, **env, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_daphne_keeps_no_persistent_database_connections(tmp_path):
    # Django advises against CONN_MAX_AGE under ASGI; gunicorn (WSGI) keeps its 600 s default.
    assert _role_env("ws", tmp_path, DB_CONN_MAX_AGE="60") == "DB_CONN_MAX_AGE=0"
    assert _role_env("ws", tmp_path, DB_CONN_MAX_AGE_WS="30") == "DB_CONN_MAX_AGE=30"
    assert _role_env("api", tmp_path, DB_CONN_MAX_AGE="60") == "DB_CONN_MAX_AGE=60"
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['CONN_MAX_AGE'])"
    )
    assert run_python(code, POSTWIRE_ENV="development", DB_CONN_MAX_AGE="0").stdout.strip() == "0"
    assert run_python(code, POSTWIRE_ENV="development").stdout.strip() == "600"


def test_login_throttle_settings_have_safe_defaults():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.LOGIN_MAX_FAILURES, s.LOGIN_MAX_FAILURES_PER_IP, s.LOGIN_LOCKOUT_SECONDS, s.BOOTSTRAP_RESET_PASSWORD)"
    )
    assert run_python(code, POSTWIRE_ENV="development").stdout.strip() == "5 20 300 False"
    refused = run_python(code, POSTWIRE_ENV="development", POSTWIRE_LOGIN_LOCKOUT_SECONDS="0")
    assert refused.returncode != 0 and "POSTWIRE_LOGIN_LOCKOUT_SECONDS" in refused.stderr


def test_the_hub_rejoins_within_a_short_group_expiry_unless_told_otherwise():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.HUB_REJOIN_SECONDS)"
    # Empty is what compose passes when nothing is set: computed from the expiry.
    assert (
        run_python(code, **PRODUCTION, CHANNEL_GROUP_EXPIRY="60", POSTWIRE_HUB_REJOIN_SECONDS="").stdout.strip()
        == "15.0"
    )
    assert (
        run_python(code, **PRODUCTION, CHANNEL_GROUP_EXPIRY="60", POSTWIRE_HUB_REJOIN_SECONDS="5").stdout.strip()
        == "5.0"
    )


# --- One source for every default ---------------------------------------------------------------
# settings.py holds every default; .env.example states each (commented out, so that a copy of it
# changes nothing); compose passes the variables through and sets only its own topology.


def settings_reads() -> dict[str, str]:
    """Every variable settings.py reads → its default, as an expression in settings' namespace.

    Found in the source rather than by importing it, so that a read in a branch not taken (e.g.
    CHANNEL_CAPACITY, read only with the core layer) is found too.
    """
    source = SETTINGS.read_text()
    assert "os.environ" not in source and "getenv" not in source, "settings.py must read through `env`"
    reads = {}
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)):
            continue
        name, function = call.args[0].value, ast.unparse(call.func)
        if function == "_required":  # the development default, else nothing: production must set it
            reads[name] = f'{ast.unparse(call.args[1])} if DEVELOPMENT else ""'
        elif re.fullmatch(r"env(\.\w+)?", function):
            default = next((k.value for k in call.keywords if k.arg == "default"), None)
            reads[name] = ast.unparse(default) if default else '""'
    return reads


def env_text(value) -> str:
    """A default written as an env file would set it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def settings_defaults(**env) -> dict[str, str]:
    """Each variable's default, evaluated in settings' namespace with nothing else set."""
    code = (
        f"import json, server.settings as s\n"
        f"print(json.dumps({{k: eval(v, vars(s)) for k, v in {settings_reads()!r}.items()}}))"
    )
    result = run_python(code, **env)
    assert result.returncode == 0, result.stderr
    return {name: env_text(value) for name, value in json.loads(result.stdout.splitlines()[-1]).items()}


def env_example() -> dict[str, dict[str, list[str]]]:
    """.env.example's sections (header → NAME → [default, development default]).

    Every variable is a line `# NAME=default`; a default that differs with POSTWIRE_ENV=development
    follows on the next line as `#   development: VALUE`.
    """
    sections, section, name = {}, None, None
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        assert not line or line.startswith("#"), f".env.example:{number}: not commented out: {line}"
        if header := re.fullmatch(r"# --- (.+?)(?: -+)?", line):
            section = sections.setdefault(header[1], {})
        elif variable := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(.*)", line):
            name = variable[1]
            assert all(name not in s for s in sections.values()), f".env.example:{number}: {name} again"
            section[name] = [variable[2], variable[2]]
            continue
        elif development := re.fullmatch(r"#   development: (.*)", line):
            assert name, f".env.example:{number}: a development default under no variable"
            section[name][1] = development[1]
        name = None
    return sections


def readers(header: str) -> list[Path]:
    """The files a section's header names as reading its variables: `--- Title (a, b) ---`."""
    return [REPO / path for path in re.fullmatch(r".*\((.+)\)", header)[1].split(", ")]


def test_env_example_states_every_default_of_settings_and_nothing_else():
    listed = {}
    for header, variables in env_example().items():
        if SETTINGS in readers(header):
            listed.update(variables)
    production = settings_defaults(**PRODUCTION)
    assert {name: values[0] for name, values in listed.items()} == production, ".env.example == settings.py"
    development = settings_defaults(POSTWIRE_ENV="development")
    assert {name: values[1] for name, values in listed.items()} == development, (
        ".env.example == settings.py, with POSTWIRE_ENV=development"
    )


def test_env_example_lists_other_components_variables_under_their_readers():
    read_by_settings = set(settings_reads())
    for header, variables in env_example().items():
        files = readers(header)
        if SETTINGS in files:
            continue
        text = "".join(path.read_text() for path in files)
        for name in variables:
            assert name not in read_by_settings, f"{name} is read by settings.py, but listed under {header}"
            assert re.search(rf"\b{name}\b", text), f"{name} is listed under {header}, which never reads it"


# Settings variables that compose gives a value of its own: its topology (service names in the
# URLs and hosts), and what makes `up` usable out of the box (development mode, a staff user).
COMPOSE_SETS = {
    "POSTWIRE_ENV",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "POSTWIRE_BOOTSTRAP_USERNAME",
    "POSTWIRE_BOOTSTRAP_PASSWORD",
}
# And two it leaves unset: each replica is named after its own hostname, and the static files are
# where the image build collected them.
COMPOSE_LEAVES_UNSET = {"POSTWIRE_NODE_NAME", "DJANGO_STATIC_ROOT"}


def test_compose_passes_settings_through_without_restating_defaults():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    reads = set(settings_reads())
    # migrate gets every variable (the staff user's too); api and ws the same but the staff user.
    missing = reads - COMPOSE_LEAVES_UNSET - set(services["migrate"]["environment"])
    assert missing == set(), "compose must pass these through to the application (`NAME:`)"
    for service in ("migrate", "api", "ws"):
        environment = services[service]["environment"]
        restated = {k: v for k, v in environment.items() if k in reads - COMPOSE_SETS and v is not None}
        assert restated == {}, f"{service}: pass these through (`NAME:`), settings.py has their defaults"
