"""Drives the repository's real docker-compose.yml with docker-compose 1.29, as one project.

The project gets a unique name and a free published port, and sees only the variables a
developer without a `.env` would (plus the local stand-ins of the upstream images from
.ci/base-images.sh): nothing from the test process's own environment leaks into the file's
`${VAR:-default}` interpolation.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.proc import free_port
from tests.support.docker import IMAGES_ENV, DockerError, docker, read_images_env, run

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
IMAGE_VARS = ("PYTHON_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE", "NGINX_IMAGE", "PROMETHEUS_IMAGE")
# What a docker client may legitimately need from the caller's environment.
PASS_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CONTEXT",
)

EXPECTED = {"postgres": 1, "redis": 1, "migrate": 1, "api": 2, "ws": 3, "nginx": 1}  # services → replicas
ARTIFACTS = REPO / "artifacts"

# Figures printed at the end of the run (pytest_terminal_summary in conftest.py).
REPORT: dict[str, str] = {}


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


class ComposeError(DockerError):
    pass


def stand_in_images() -> dict[str, str]:
    """The upstream image overrides: from images.env, else from the environment if all are set."""
    found = read_images_env()
    if found is not None:
        values = {k: v for k, v in found.items() if k in IMAGE_VARS}
        missing = [k for k in IMAGE_VARS if k not in values]
        if missing:
            raise ComposeError(f"{IMAGES_ENV} lacks {', '.join(missing)}: re-run `bash .ci/base-images.sh` (root)")
        return values
    if all(os.environ.get(k) for k in IMAGE_VARS):
        return {k: os.environ[k] for k in IMAGE_VARS}
    raise ComposeError(
        f"{IMAGES_ENV} is missing: no registry is reachable here, so the upstream images must be "
        f"local stand-ins. Build them with `bash .ci/base-images.sh` (root), or set {', '.join(IMAGE_VARS)}."
    )


@dataclass
class Container:
    id: str
    name: str
    service: str
    number: int
    hostname: str
    status: str  # running, exited, ...
    health: str  # healthy, starting, unhealthy, or "" without a healthcheck
    exit_code: int
    started_at: str
    restart_count: int
    ip: str

    @classmethod
    def from_inspect(cls, data: dict) -> Container:
        labels = data["Config"]["Labels"] or {}
        networks = data["NetworkSettings"]["Networks"] or {}
        return cls(
            id=data["Id"],
            name=data["Name"].lstrip("/"),
            service=labels.get("com.docker.compose.service", ""),
            number=int(labels.get("com.docker.compose.container-number", "0")),
            hostname=data["Config"]["Hostname"],
            status=data["State"]["Status"],
            health=(data["State"].get("Health") or {}).get("Status", ""),
            exit_code=data["State"]["ExitCode"],
            started_at=data["State"]["StartedAt"],
            restart_count=data["RestartCount"],
            ip=next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), ""),
        )


class ComposeProject:
    def __init__(self, work_dir: Path, *, name: str | None = None, port: int | None = None, log=print):
        self.name = name or f"pwcompose{secrets.token_hex(3)}"
        self.port = port or free_port()
        self.log = log
        # An empty env file: a developer's .env in the checkout must not change what is tested.
        self.env_file = work_dir / "empty.env"
        self.env_file.write_text("")
        self.env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        self.env.update(stand_in_images())
        self.env.update(
            {
                # docker-compose 1.29 builds with `docker build`; this Docker CLI has no buildx, so
                # the classic builder, said explicitly (it is also the CLI's fallback).
                "DOCKER_BUILDKIT": "0",
                "POSTWIRE_HTTP_PORT": str(self.port),
                "PROMETHEUS_PORT": str(free_port()),
            }
        )
        self.down_done = False

    # --- URLs ------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/wsgraphql"

    # --- commands --------------------------------------------------------------------------

    def compose(
        self, *args: str, profiles: tuple[str, ...] = (), timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess:
        base = [
            "docker-compose",
            "--env-file",
            str(self.env_file),
            "-f",
            str(COMPOSE_FILE),
            "--project-directory",
            str(REPO),
            "-p",
            self.name,
        ]
        for profile in profiles:
            base += ["--profile", profile]
        return run([*base, *args], env=self.env, timeout=timeout, check=check)

    def containers(self, service: str | None = None, *, running_only: bool = False) -> list[Container]:
        filters = ["--filter", f"label=com.docker.compose.project={self.name}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = docker("ps", "-aq", "--no-trunc", *filters).stdout.split()
        if not ids:
            return []
        found = [Container.from_inspect(d) for d in json.loads(docker("inspect", *ids).stdout)]
        if running_only:
            found = [c for c in found if c.status == "running"]
        return sorted(found, key=lambda c: (c.service, c.number))

    def wait_healthy(self, expected: dict[str, int], *, timeout: float = 180) -> float:
        """Until every service has its expected number of running, healthy containers (and the
        one-shot migrate has exited 0). Returns the seconds waited."""
        start = time.monotonic()
        while True:
            containers = self.containers()
            problems = []
            for service, count in expected.items():
                mine = [c for c in containers if c.service == service]
                if service == "migrate":
                    if not any(c.status == "exited" and c.exit_code == 0 for c in mine):
                        failed = [c for c in mine if c.status == "exited" and c.exit_code != 0]
                        if failed:
                            raise ComposeError(f"migrate failed (exit {failed[0].exit_code}):\n{self.logs('migrate')}")
                        problems.append("migrate not done")
                    continue
                ready = [c for c in mine if c.status == "running" and c.health in ("healthy", "")]
                if len(ready) != count:
                    problems.append(
                        f"{service}: {len(ready)}/{count} healthy "
                        f"({', '.join(f'{c.name}={c.status}/{c.health}' for c in mine)})"
                    )
            if not problems:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise ComposeError(f"not healthy after {timeout:.0f} s: {'; '.join(problems)}\n{self.logs(tail=60)}")
            time.sleep(0.5)

    def logs(self, *services: str, tail: int = 200) -> str:
        result = self.compose("logs", "--no-color", f"--tail={tail}", *services, check=False, timeout=120)
        return result.stdout + result.stderr

    def down(self) -> float:
        start = time.monotonic()
        # With every profile, so that the load tester and monitoring services count as the project's too.
        self.compose(
            "down", "-v", "--remove-orphans", "--timeout", "10", profiles=("loadtest", "monitoring"), timeout=300
        )
        self.down_done = True
        return time.monotonic() - start

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project still present: by compose's project
        label, and by the `<project>_` name prefix compose gives everything it creates."""
        label = f"label=com.docker.compose.project={self.name}"
        found = {
            "containers": docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()
            + docker("ps", "-a", "--filter", f"name={self.name}_", "--format", "{{.Names}}").stdout.split(),
            "networks": docker("network", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split()
            + docker("network", "ls", "--filter", f"name={self.name}_", "--format", "{{.Name}}").stdout.split(),
            "volumes": docker("volume", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split()
            + docker("volume", "ls", "--filter", f"name={self.name}_", "--format", "{{.Name}}").stdout.split(),
        }
        return {kind: sorted(set(names)) for kind, names in found.items() if names}
