"""Child processes of the local stack: started with a log file, waited on until ready, stopped."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


class StartupError(RuntimeError):
    pass


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A free port *below* the kernel's ephemeral range. A port the kernel hands out (bind to 0)
    comes from that range, where a load test's thousands of client sockets live: a node could
    then fail to start with "Address already in use" between choosing and binding."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(20000, low) if low > 20100 else random.randrange(1024, low)
        if port_is_free(port, host):
            return port
    raise StartupError(f"no free port found below {low} on {host}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def require(binary: str, hint: str) -> str:
    """Find a server binary on PATH (or PostgreSQL's versioned dir), or say how to get it."""
    extra = ":".join(str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    found = shutil.which(binary, path=os.environ.get("PATH", "") + ":" + extra + ":/usr/sbin")
    if not found:
        raise StartupError(f"{binary} not found: {hint}")
    return found


def drop_root_prefix() -> list[str]:
    """PostgreSQL refuses to run as root: when we are root, run it as `nobody`."""
    if os.geteuid() != 0:
        return []
    return [require("setpriv", "apt-get install util-linux"), "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


class Process:
    def __init__(self, name: str, argv: list[str], *, log_dir: Path, env: dict | None = None, cwd=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")
        # Own process group: Ctrl-C in the terminal reaches the supervisor only, which then
        # stops children in order.
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _fail(self, what: str):
        raise StartupError(f"{self.name}: {what}\n--- {self.log_path} (tail) ---\n{self.log_tail()}")

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self._fail(f"exited with {self.popen.returncode} before listening on {port}")
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                return
            time.sleep(0.1)
        self._fail(f"not listening on {host}:{port} after {timeout}s")

    def wait_for_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                self._fail(f"exited with {self.popen.returncode} before {url} answered")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except Exception as exc:  # not up yet; keep the last reason for the error message
                last = exc
            time.sleep(0.2)
        self._fail(f"{url} did not answer 200 within {timeout}s (last: {last})")

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if not self.alive():
            return
        self.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        """Abrupt death (a crashed node): SIGKILL, no cleanup."""
        self.stop(timeout=5, sig=signal.SIGKILL)
