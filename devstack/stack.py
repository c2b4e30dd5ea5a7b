"""The whole postwire topology on loopback, without Docker:

    nginx :port ─┬─ /graphql   → gunicorn × api_nodes   (services/api/bin/postwire api)
                 └─ /wsgraphql → Daphne  × ws_nodes    (services/api/bin/postwire ws)
    PostgreSQL and Redis: started here on free ports, or given as DATABASE_URL / REDIS_URL.

Used by `bin/devstack` (interactive) and by the stack test tier (as a context manager).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.backing import Postgres, Redis
from devstack.proc import Process, StartupError, free_port, port_is_free, require

REPO = Path(__file__).resolve().parent.parent
API_DIR = REPO / "services" / "api"
POSTWIRE = API_DIR / "bin" / "postwire"
NGINX_RENDER = REPO / "nginx" / "render-config.sh"
# A staff user out of the box, as compose has (settings.py creates none by default).
STAFF_USERNAME, STAFF_PASSWORD = "admin", "postwire-admin"


@dataclass
class Node:
    name: str
    port: int
    process: Process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Stack:
    def __init__(
        self,
        *,
        ws_nodes: int = 3,
        api_nodes: int = 1,
        port: int | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        run_dir: Path | None = None,
        staff_username: str = STAFF_USERNAME,
        staff_password: str = STAFF_PASSWORD,
        extra_env: dict[str, str] | None = None,
        node_env: dict[str, dict[str, str]] | None = None,
        database_name: str = "postwire",
        ws_command: list[str] | None = None,
        nginx_workers: int = 2,
        postwire: Path | None = None,
    ):
        self.ws_count = ws_nodes
        self.api_count = api_nodes
        self.port = port or free_port()
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="postwire-stack-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.staff_username = staff_username
        self.staff_password = staff_password
        self.extra_env = extra_env or {}
        self.node_env = node_env or {}  # per node name (e.g. "ws-2"), on top of extra_env
        # Another WebSocket tier in postwire's place (the benchmark's Node.js peer): its argv,
        # given PORT, POSTWIRE_NODE_NAME and REDIS_URL in the environment like Daphne is.
        self.ws_command = ws_command
        self.nginx_workers = nginx_workers
        # The services' entry point (bin/postwire): this checkout's, or another revision's (the
        # benchmark's before/after pairs).
        self.postwire = Path(postwire or POSTWIRE)
        self.database_name = database_name
        self.postgres = None if database_url else Postgres(self.run_dir)
        self.redis = None if redis_url else Redis(self.run_dir)
        self._database_url = database_url
        self._redis_url = redis_url
        self.api: list[Node] = []
        self.ws: list[Node] = []
        self.nginx: Process | None = None

    # --- URLs -----------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.http_url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/wsgraphql"

    @property
    def database_url(self) -> str:
        return self._database_url

    @property
    def redis_url(self) -> str:
        return self._redis_url or self.redis.url

    # --- lifecycle ------------------------------------------------------------------------

    def app_env(self, node_name: str, port: int) -> dict[str, str]:
        """Only the local topology; development mode gives the rest its defaults (settings.py)."""
        env = dict(os.environ)
        env.update(
            POSTWIRE_ENV="development",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            POSTWIRE_NODE_NAME=node_name,
            PORT=str(port),
            BIND="127.0.0.1",  # loopback only, as the README says
            POSTWIRE_BOOTSTRAP_USERNAME=self.staff_username,
            POSTWIRE_BOOTSTRAP_PASSWORD=self.staff_password,
            # The venv that runs this supervisor also runs the services.
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(self.node_env.get(node_name, {}))
        return env

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.postgres:
            self.postgres.start()
            self._database_url = self.postgres.create_database(self.database_name)
        if self.redis:
            self.redis.start()
        self._migrate()
        for i in range(1, self.api_count + 1):
            self.api.append(self._start_node("api", i))
        for i in range(1, self.ws_count + 1):
            self.ws.append(self._start_node("ws", i))
        for node in self.api + self.ws:
            node.process.wait_for_http(f"{node.base_url}/healthz", timeout=60)
        self._start_nginx()

    def _migrate(self) -> None:
        result = subprocess.run(
            [str(self.postwire), "migrate"], env=self.app_env("migrate", 0), capture_output=True, text=True
        )
        if result.returncode != 0:
            raise StartupError(f"migrate failed:\n{result.stdout}\n{result.stderr}")

    def _start_node(self, role: str, index: int) -> Node:
        name = f"{role}-{index}"
        port = free_port()
        env = self.app_env(name, port)
        if role == "api":
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.run_dir / f"prometheus-{name}")
        argv = self.ws_command if role == "ws" and self.ws_command else [str(self.postwire), role]
        process = Process(name, argv, log_dir=self.run_dir, env=env).start()
        return Node(name, port, process)

    @property
    def nginx_temp(self) -> Path:
        """nginx's pid and request-body temp files. Run as root, nginx's workers are `nobody`, who
        cannot enter a private run directory (pytest's are 0700): a request body over 64 KiB then
        failed with 500. So root gets a directory of its own under /tmp that nobody can reach."""
        if os.geteuid() != 0:
            return self.run_dir / "nginx"
        if getattr(self, "_nginx_temp", None) is None:
            self._nginx_temp = Path(tempfile.mkdtemp(prefix="postwire-nginx-"))
            self._nginx_temp.chmod(0o755)
        return self._nginx_temp

    def nginx_conf(self) -> str:
        env = dict(os.environ)
        env.update(
            POSTWIRE_LISTEN_PORT=str(self.port),
            POSTWIRE_LISTEN_ADDRESS="127.0.0.1",
            POSTWIRE_API_SERVERS=" ".join(f"127.0.0.1:{n.port}" for n in self.api),
            POSTWIRE_WS_SERVERS=" ".join(f"127.0.0.1:{n.port}" for n in self.ws),
            POSTWIRE_RESOLVER="",
            NGINX_RUN_DIR=str(self.nginx_temp),
            NGINX_ACCESS_LOG=str(self.run_dir / "nginx-access.log"),
            NGINX_ERROR_LOG=str(self.run_dir / "nginx-error.log"),
            NGINX_WORKER_PROCESSES=str(self.nginx_workers),
            # Each proxied WebSocket holds two connections of a worker; the open-file limit is
            # 20,000 per process, so this lets one worker carry ~9,500 sockets.
            NGINX_WORKER_CONNECTIONS=os.environ.get("NGINX_WORKER_CONNECTIONS", "19000"),
            POSTWIRE_NGINX_WS_CONNS_PER_IP="0",
            POSTWIRE_NGINX_GRAPHQL_RATE="0",  # load tests: one client address
        )
        result = subprocess.run(["sh", str(NGINX_RENDER)], env=env, capture_output=True, text=True, check=True)
        return result.stdout

    def _start_nginx(self) -> None:
        nginx = require("nginx", "apt-get install nginx-light")
        if not port_is_free(self.port):
            # Otherwise the health check below could be answered by whatever holds the port.
            raise StartupError(f"port {self.port} is in use (another devstack?); pick another with --port")
        (self.run_dir / "nginx").mkdir(exist_ok=True)
        conf = self.run_dir / "nginx.conf"
        conf.write_text(self.nginx_conf())
        argv = [
            nginx,
            "-e",
            str(self.run_dir / "nginx-error.log"),
            "-p",
            str(self.run_dir / "nginx"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ]
        check = subprocess.run([*argv[:-2], "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise StartupError(f"nginx rejected the rendered config:\n{check.stderr}")
        self.nginx = Process("nginx", argv, log_dir=self.run_dir).start()
        self.nginx.wait_for_http(f"{self.http_url}/healthz")

    def stop(self) -> None:
        for process in [self.nginx, *(n.process for n in self.ws + self.api)]:
            if process is not None:
                process.stop()
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
        if getattr(self, "_nginx_temp", None) is not None:
            shutil.rmtree(self._nginx_temp, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what tests do to it --------------------------------------------------------------

    def manage(self, *args: str) -> str:
        """Run a manage.py command against this stack's database (test setup, not a client path)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=API_DIR,
            env=self.app_env("manage", 0),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def node(self, name: str) -> Node:
        return next(n for n in self.api + self.ws if n.name == name)

    def restart_node(self, name: str) -> None:
        node = self.node(name)
        node.process.stop()
        node.process.start()
        node.process.wait_for_http(f"{node.base_url}/healthz", timeout=60)
