"""What the figures were measured on: machine, kernel, servers and package versions."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata

from devstack.proc import StartupError, require

PACKAGES = [
    "django",
    "channels",
    "channels-redis",
    "daphne",
    "twisted",
    "autobahn",
    "strawberry-graphql",
    "strawberry-graphql-django",
    "graphql-core",
    "redis",
    "gunicorn",
    "psycopg",
    "uvloop",
    "hdrhistogram",
    "psutil",
]
NODE_PEER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "node-peer")


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else ""


def _server(binary: str, flag: str) -> str:
    try:
        return _first_line([require(binary, ""), flag])
    except StartupError:
        return "not found"


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            kib = int(re.search(r"^MemTotal:\s+(\d+)", f.read(), re.M).group(1))
            mem_gib = round(kib / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def source() -> dict:
    """Which postwire was measured: the commit, and whether the API's files differed from it."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "api_uncommitted_changes": bool(git("status", "--porcelain", "--", "services/api", "devstack", "nginx")),
    }


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        from postwire_loadtest import __version__

        out["postwire-loadtest"] = __version__
    except ImportError:
        out["postwire-loadtest"] = None
    out["node"] = _first_line(["node", "--version"])
    for package in ("graphql-ws", "ws", "graphql", "ioredis"):
        try:
            import json

            with open(os.path.join(NODE_PEER, "node_modules", package, "package.json")) as f:
                out[f"npm {package}"] = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            out[f"npm {package}"] = None
    out["nginx"] = _server("nginx", "-v")
    out["redis-server"] = _server("redis-server", "--version")
    out["postgres"] = _server("postgres", "--version")
    return out
