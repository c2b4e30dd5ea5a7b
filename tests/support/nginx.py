"""postwire's nginx configuration (nginx/render-config.sh), rendered and run outside the stack's
own nginx: for the tests that need it with other settings (limits on, other backends)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from devstack.proc import Process, free_port, require
from devstack.stack import NGINX_RENDER


def render(run_dir: Path, **env) -> str:
    """The rendered nginx.conf for `env` (backends default to a closed port, one worker)."""
    env = {
        **os.environ,
        "POSTWIRE_API_SERVERS": "127.0.0.1:9",
        "POSTWIRE_WS_SERVERS": "127.0.0.1:9",
        "POSTWIRE_RESOLVER": "",
        "NGINX_RUN_DIR": str(run_dir),
        "NGINX_ACCESS_LOG": str(run_dir / "access.log"),
        "NGINX_ERROR_LOG": str(run_dir / "error.log"),
        "NGINX_WORKER_PROCESSES": "1",
        **env,
    }
    return subprocess.run(["sh", str(NGINX_RENDER)], env=env, capture_output=True, text=True, check=True).stdout


def nginx_command(run_dir: Path, *args: str) -> list[str]:
    """nginx with run_dir's nginx.conf, its prefix and error log in run_dir."""
    nginx = require("nginx", "apt-get install nginx-light")
    return [nginx, "-e", str(run_dir / "error.log"), "-p", str(run_dir), "-c", str(run_dir / "nginx.conf"), *args]


def nginx_test(run_dir: Path, conf: str) -> subprocess.CompletedProcess:
    """`nginx -t` of `conf` (written to run_dir/nginx.conf)."""
    (run_dir / "nginx.conf").write_text(conf)
    return subprocess.run(nginx_command(run_dir, "-t"), capture_output=True, text=True)


@contextlib.contextmanager
def running_nginx(name: str, log_dir: Path, **env) -> Iterator[str]:
    """An nginx rendered from `env` and started; yields its 127.0.0.1:port."""
    # Run as root, nginx's workers are `nobody`: they need a run directory they can enter.
    run_dir = Path(tempfile.mkdtemp(prefix=f"postwire-{name}-"))
    run_dir.chmod(0o755)
    port = free_port()
    result = nginx_test(run_dir, render(run_dir, POSTWIRE_LISTEN_PORT=str(port), **env))
    assert result.returncode == 0, result.stderr
    process = Process(name, nginx_command(run_dir, "-g", "daemon off;"), log_dir=log_dir).start()
    try:
        process.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()
        if os.environ.get("KEEP_STACK_LOGS") is None:
            shutil.rmtree(run_dir, ignore_errors=True)
