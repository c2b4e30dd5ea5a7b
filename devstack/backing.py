"""PostgreSQL and Redis for the local stack and the tests, on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from devstack.proc import Process, StartupError, drop_root_prefix, free_port, require

PG_HINT = "install PostgreSQL's server binaries (apt-get install postgresql) or set DATABASE_URL"
REDIS_HINT = "apt-get install redis-server, or set REDIS_URL"


class Postgres:
    """A throwaway cluster: trust auth on 127.0.0.1 only, durability off (it is scratch data)."""

    def __init__(self, run_dir: Path, port: int | None = None):
        # Its own directory directly under the temp dir: when we run as root, PostgreSQL runs
        # as `nobody`, who must be able to reach it (run_dir may sit under 0700 parents).
        self.dir = Path(tempfile.mkdtemp(prefix="postwire-pg-"))
        self.port = port or free_port()
        self.log_dir = run_dir
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"postgres://postwire@127.0.0.1:{self.port}/postwire"

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(drop_root_prefix() + argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StartupError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> Postgres:
        initdb = require("initdb", PG_HINT)
        postgres = require("postgres", PG_HINT)
        data = self.dir / "data"
        sockets = self.dir / "sockets"
        if not (data / "PG_VERSION").exists():
            if os.geteuid() == 0:
                subprocess.run(["chown", "nobody:nogroup", str(self.dir)], check=True)
            self._run([initdb, "-D", str(data), "-U", "postwire", "--auth=trust", "-E", "UTF8", "--no-sync"])
        sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "nobody:nogroup", str(sockets)], check=True)
        argv = drop_root_prefix() + [
            postgres,
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ]
        self.process = Process("postgres", argv, log_dir=self.log_dir).start()
        self.process.wait_for_port(self.port, timeout=60)
        self._wait_accepting(sockets)
        self.create_database("postwire")
        return self

    def _wait_accepting(self, sockets: Path) -> None:
        psql = require("psql", PG_HINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postwire", "-d", "postgres", "-Atc", "SELECT 1"],
                capture_output=True,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.2)
        raise StartupError(f"postgres on {self.port} does not accept connections:\n{self.process.log_tail()}")

    def create_database(self, name: str) -> str:
        if not self._psql("-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self._psql("-qc", f'CREATE DATABASE "{name}"')
        return f"postgres://postwire@127.0.0.1:{self.port}/{name}"

    def _psql(self, *args: str) -> str:
        """psql as the postwire superuser on the maintenance database; its output."""
        psql = require("psql", PG_HINT)
        command = [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postwire", "-d", "postgres", *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    def stop(self) -> None:
        if self.process:
            # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, exit.
            self.process.stop(sig=signal.SIGINT, timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Fast shutdown and start again on the same data and port (every session is cut)."""
        self.process.stop(sig=signal.SIGINT, timeout=20)
        time.sleep(down_seconds)
        self.process.start()
        self.process.wait_for_port(self.port, timeout=60)
        self._wait_accepting(self.dir / "sockets")


class Redis:
    def __init__(self, run_dir: Path, port: int | None = None, *, replica_of: int | None = None):
        self.port = port or free_port()
        self.log_dir = run_dir
        self.replica_of = replica_of  # the port of a master on 127.0.0.1 to replicate
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        redis_server = require("redis-server", REDIS_HINT)
        # --dir: a replica (or a promoted one) writes dump.rdb there, not into the caller's cwd.
        argv = [
            redis_server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.log_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "20000",
            "--daemonize",
            "no",
        ]
        if self.replica_of:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = Process(f"redis-{self.port}", argv, log_dir=self.log_dir).start()
        self.process.wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop and start on the same port: every key (group memberships too) is gone."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


class Sentinel:
    """One Redis Sentinel (Debian's redis-sentinel) watching a master on 127.0.0.1. It rewrites
    its config file as it learns, so each gets its own."""

    def __init__(
        self,
        run_dir: Path,
        master_port: int,
        *,
        master_name: str = "postwire",
        quorum: int = 2,
        down_after_ms: int = 1000,
    ):
        self.port = free_port()
        self.log_dir = run_dir
        self.conf = run_dir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
            f"sentinel failover-timeout {master_name} 5000\n"
        )
        self.process: Process | None = None

    def start(self) -> Sentinel:
        binary = require("redis-sentinel", "apt-get install redis-sentinel")
        self.process = Process(f"sentinel-{self.port}", [binary, str(self.conf)], log_dir=self.log_dir).start()
        self.process.wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
