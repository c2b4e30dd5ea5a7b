"""The k8s tier: k8s/ rendered once per session with a real kustomize; for the boot test, the
images its pods run, built from this checkout on the local stand-ins of the upstream images."""

import os

import pytest

from tests.k8s.manifests import REPO, TARGETS, copy_tree, render
from tests.support.docker import read_images_env, run, why_no_docker

# The upstream images, where .ci/base-images.sh's images.env names no local stand-in.
UPSTREAM = {
    "PYTHON_IMAGE": "python:3.11-slim-bookworm",
    "POSTGRES_IMAGE": "postgres:15-bookworm",
    "REDIS_IMAGE": "redis:7-bookworm",
    "NGINX_IMAGE": "nginx:1.27-bookworm",
}


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory):
    """A copy of k8s/ with the prod overlay's secrets.env made from its example."""
    return copy_tree(tmp_path_factory.mktemp("k8s"), with_prod_secrets=True)


@pytest.fixture(scope="session")
def rendered(k8s_tree) -> dict[str, list[dict]]:
    return {name: render(k8s_tree / path) for name, path in TARGETS.items()}


def _build(tag: str, context: str, build_arg: str, base: str) -> None:
    result = run(
        ["docker", "build", "-q", "--build-arg", f"{build_arg}={base}", "-t", tag, str(REPO / context)],
        check=False,
        timeout=1200,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if result.returncode != 0:
        pytest.fail(
            f"docker build of {tag} ({context}, {build_arg}={base}) failed:\n{result.stderr[-3000:]}\n"
            f"(no registry here: run `bash .ci/base-images.sh` for local base images)"
        )


@pytest.fixture(scope="session")
def local_images() -> dict[str, str]:
    """Manifest image repository → local image: postwire's own built from this checkout (the
    build cache makes an unchanged rebuild cheap), upstream ones from images.env.
    POSTWIRE_K8S_API_IMAGE / POSTWIRE_K8S_NGINX_IMAGE name an existing image to use instead."""
    why = why_no_docker()
    if why:
        pytest.fail(
            f"the k8s boot test needs a Docker engine and has none: {why}. "
            f"Start one with `bash .ci/docker-engine.sh` (root)."
        )
    bases = {**UPSTREAM, **(read_images_env() or {})}
    api = os.environ.get("POSTWIRE_K8S_API_IMAGE")
    if not api:
        api = "postwire/api:dev"
        _build(api, "services/api", "PYTHON_IMAGE", bases["PYTHON_IMAGE"])
    nginx = os.environ.get("POSTWIRE_K8S_NGINX_IMAGE")
    if not nginx:
        nginx = "postwire/nginx:dev"
        _build(nginx, "nginx", "NGINX_IMAGE", bases["NGINX_IMAGE"])
    return {
        "postwire/api": api,
        "postwire/nginx": nginx,
        "postgres": bases["POSTGRES_IMAGE"],
        "redis": bases["REDIS_IMAGE"],
    }
