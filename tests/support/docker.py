"""The Docker engine as the compose and k8s tiers use it: one way to run `docker` (and
`docker-compose`), one answer to "is there an engine?", one reader of the stand-in images file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Written by .ci/base-images.sh: PYTHON_IMAGE=, POSTGRES_IMAGE=, REDIS_IMAGE=, NGINX_IMAGE=.
IMAGES_ENV = Path(os.environ.get("POSTWIRE_IMAGES_ENV", "/var/cache/postwire/images.env"))


class DockerError(AssertionError):
    """A docker (or docker-compose) command failed, or did not finish in time."""


class DockerTimeout(DockerError):
    """A docker command did not finish within its timeout."""


def run(
    args: list[str], *, env: dict | None = None, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command, its output captured as text. A timeout raises DockerTimeout; a non-zero
    exit status raises DockerError if `check`, with the ends of both output streams."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DockerTimeout(f"{' '.join(args[:6])} ... did not finish within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        raise DockerError(
            f"{' '.join(args)} failed with exit status {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(["docker", *args], timeout=timeout, check=check)


def why_no_docker(*, compose: bool = False) -> str | None:
    """None when a Docker engine answers (and, with `compose`, docker-compose is installed),
    else the reason."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    if compose and shutil.which("docker-compose") is None:
        return "docker-compose (1.29, Debian package docker-compose) is not installed"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if result.returncode != 0:
        return f"`docker info` failed: {result.stderr.strip()}"
    return None


def read_images_env(path: Path = IMAGES_ENV) -> dict[str, str] | None:
    """The KEY=value lines of .ci/base-images.sh's images file (comments skipped), or None
    when there is no such file."""
    if not path.is_file():
        return None
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value
    return values
