"""Run a rendered overlay's workloads as Docker containers: as close to a cluster as a machine
without one gets.

What is carried over from each pod spec, and how:
  image            through an explicit map (postwire/api → the locally built image, postgres →
                   the local stand-in, ...); an image with no entry is an error
  command, args    Kubernetes semantics: command replaces ENTRYPOINT, args replace CMD; $(VAR)
                   references are expanded from the container's environment
  env, envFrom     resolved from the rendered ConfigMaps and Secrets (configMapRef, secretRef,
                   configMapKeyRef, secretKeyRef) and fieldRef metadata.name/namespace
  securityContext  runAsUser/runAsGroup/fsGroup → --user/--group-add, runAsNonRoot checked,
                   readOnlyRootFilesystem → --read-only, allowPrivilegeEscalation false →
                   no-new-privileges, capabilities → --cap-drop/--cap-add
  resources        limits → --memory/--cpus
  volumes          emptyDir → tmpfs (mode 1777 like an emptyDir; one per container, so not shared
                   between a pod's containers, which postwire never needs); a
                   volumeClaimTemplate or PVC → a Docker volume
  initContainers   run one after another to completion before the main container
  probes           startup, then readiness, then liveness must pass (httpGet against the pod
                   IP, exec inside the container, tcpSocket) before start() returns
  Services         one Docker network; each pod carries, as network aliases, the names of the
                   Services whose selector matches its labels (short name and namespace forms)
  Jobs             run to completion, retried up to backoffLimit (at most 3 attempts here: the
                   Job starts only once what it needs is Ready, so a repeat failure is real)
  replicas         spec.replicas, raised to a HorizontalPodAutoscaler's minReplicas

What Docker cannot give: a ClusterIP. A Service name resolves to its pods' own addresses
(round robin), and only once they are running, so callers start tiers in dependency order,
each once the tiers it calls are Ready (the state a cluster converges to). Pods have one
container (plus init containers); NetworkPolicies are not enforced.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field

import requests

from tests.support.docker import DockerTimeout, docker

LABEL = "postwire.k8s-podrunner"


class PodError(AssertionError):
    """A pod did not do what its spec says (crashed, probe failed, unsupported spec)."""


def quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if str(q).endswith(suffix):
            return int(float(str(q)[: -len(suffix)]) * factor)
    return int(q)


def quantity_cpus(q: str) -> float:
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ escapes, the rest stays."""

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, text)


@dataclass
class Pod:
    name: str
    workload: dict
    container: str  # the Docker container of the pod's main container
    ip: str = ""
    services: list[str] = field(default_factory=list)


class Cluster:
    """One namespace's worth of rendered objects, run on one Docker network."""

    def __init__(self, docs: list[dict], images: dict[str, str], *, publish: dict[str, int] | None = None, log=print):
        self.docs = docs
        self.images = images
        self.publish = publish or {}  # Service name → its port, published on 127.0.0.1
        self.run_id = secrets.token_hex(3)
        self.network = f"pwk8s-{self.run_id}"
        self.namespace = next((d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"), "default")
        self.pods: list[Pod] = []
        self.log = log
        self._containers: list[str] = []
        self._volumes: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        docker("network", "create", "--label", f"{LABEL}={self.run_id}", self.network)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None:
                self.dump_logs()
        finally:
            self.teardown()

    def teardown(self) -> None:
        """Removes every container, volume and the network this run created (by label too)."""
        listed = docker("ps", "-aq", "--filter", f"label={LABEL}={self.run_id}", check=False).stdout.split()
        for name in set(self._containers) | set(listed):
            docker("rm", "-f", "-v", name, check=False)
        listed = docker("volume", "ls", "-q", "--filter", f"label={LABEL}={self.run_id}", check=False).stdout.split()
        for volume in set(self._volumes) | set(listed):
            docker("volume", "rm", "-f", volume, check=False)
        docker("network", "rm", self.network, check=False)

    def leftovers(self) -> list[str]:
        """Anything of this run still present (empty after teardown)."""
        found = []
        for kind in ("ps -a", "volume ls", "network ls"):
            found += docker(*kind.split(), "-q", "--filter", f"label={LABEL}={self.run_id}", check=False).stdout.split()
        return found

    def dump_logs(self, lines: int = 40) -> None:
        for name in self._containers:
            out = docker("logs", "--tail", str(lines), name, check=False)
            print(f"----- logs of {name} -----\n{out.stdout}{out.stderr}", file=sys.stderr)

    # --- the objects -------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict:
        for d in self.docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
        raise PodError(f"{kind}/{name} is not in the rendered manifests")

    def configmap(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data", {}))

    def secret(self, name: str) -> dict[str, str]:
        s = self.get("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
        data.update(s.get("stringData", {}))
        return data

    def replicas(self, workload: dict) -> int:
        count = workload["spec"].get("replicas", 1)
        for hpa in (d for d in self.docs if d["kind"] == "HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) == (workload["kind"], workload["metadata"]["name"]):
                count = max(count if "replicas" in workload["spec"] else 0, hpa["spec"].get("minReplicas", 1))
        return count

    def services_for(self, labels: dict, container: dict) -> list[str]:
        """Services selecting these labels; each must map its port to the same container port,
        since a Docker alias cannot remap ports."""
        names = []
        for svc in (d for d in self.docs if d["kind"] == "Service"):
            selector = svc["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in svc["spec"]["ports"]:
                if self.container_port(container, port.get("targetPort", port["port"])) != port["port"]:
                    raise PodError(
                        f"Service {svc['metadata']['name']} maps port {port['port']} to "
                        f"{port.get('targetPort')}: a Docker alias cannot remap ports"
                    )
            names.append(svc["metadata"]["name"])
        return names

    @staticmethod
    def container_port(container: dict, port) -> int:
        if isinstance(port, int):
            return port
        for p in container.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
        raise PodError(f"container {container['name']} has no port named {port!r}")

    # --- one container -----------------------------------------------------------------------

    def environment(self, pod_name: str, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.configmap(source["configMapRef"]["name"])
            elif "secretRef" in source:
                data = self.secret(source["secretRef"]["name"])
            else:
                raise PodError(f"unsupported envFrom {source}")
            env.update({prefix + k: v for k, v in data.items()})
        fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self.secret(ref["name"]).get(ref["key"])
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = self.configmap(ref["name"]).get(ref["key"])
            elif "fieldRef" in source and source["fieldRef"]["fieldPath"] in fields:
                ref, value = source["fieldRef"], fields[source["fieldRef"]["fieldPath"]]
            else:
                raise PodError(f"unsupported env source for {item['name']}: {source}")
            if value is None:
                if ref.get("optional"):
                    continue
                raise PodError(f"{item['name']}: key {ref.get('key')} not found in {ref.get('name')}")
            env[item["name"]] = value
        return env

    def run_args(
        self,
        workload: dict,
        pod_name: str,
        container: dict,
        *,
        aliases: list[str],
        publish: list[int],
        claims: dict[str, str],
    ) -> list[str]:
        """The `docker run` arguments for one container of a pod."""
        spec = workload["spec"]["template"]["spec"]
        pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})

        def effective(key):
            return sc.get(key, pod_sc.get(key))

        args = ["--network", self.network, "--hostname", pod_name, "--label", f"{LABEL}={self.run_id}"]
        for alias in aliases:
            args += ["--network-alias", alias]
        for port in publish:
            args += ["-p", f"127.0.0.1::{port}"]

        image = self.local_image(container["image"])
        user, group = effective("runAsUser"), effective("runAsGroup")
        if effective("runAsNonRoot"):
            if user is None:  # the kubelet checks the image's USER, and only a numeric one
                user = docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip().split(":")[0]
            if not str(user).isdigit() or int(user) == 0:
                raise PodError(f"{pod_name}/{container['name']}: runAsNonRoot, but the user is {user or 'root'!r}")
        if user is not None:
            args += ["--user", f"{user}:{group}" if group is not None else str(user)]
        for gid in [pod_sc.get("fsGroup"), *pod_sc.get("supplementalGroups", [])]:
            if gid is not None:
                args += ["--group-add", str(gid)]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            raise PodError(f"{pod_name}/{container['name']}: privileged containers are not run here")
        for cap in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", cap]
        for cap in sc.get("capabilities", {}).get("add", []):
            args += ["--cap-add", cap]

        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", str(quantity_cpus(limits["cpu"]))]

        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            name, path = mount["name"], mount["mountPath"]
            if name in claims:
                args += ["-v", f"{claims[name]}:{path}" + (":ro" if mount.get("readOnly") else "")]
            elif "emptyDir" in volumes.get(name, {}):
                size = volumes[name]["emptyDir"].get("sizeLimit")
                options = "rw,exec,nosuid,nodev,mode=1777" + (f",size={quantity_bytes(size)}" if size else "")
                args += ["--tmpfs", f"{path}:{options}"]
            else:
                raise PodError(f"{pod_name}: volume {name} of an unsupported kind: {volumes.get(name)}")

        env = self.environment(pod_name, container)
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if "workingDir" in container:
            args += ["-w", container["workingDir"]]

        command = [expand(a, env) for a in container.get("command", [])]
        cmd_args = [expand(a, env) for a in container.get("args", [])]
        if command:
            args += ["--entrypoint", command[0], image, *command[1:], *cmd_args]
        else:
            args += [image, *cmd_args]
        return args

    def local_image(self, image: str) -> str:
        """The local image standing in for a manifest's image (matched by repository)."""
        last = image.split("@")[0].rsplit("/", 1)[-1]
        repository = image.split("@")[0].rsplit(":", 1)[0] if ":" in last else image.split("@")[0]
        if repository not in self.images:
            raise PodError(f"no local image for {image}: map {repository!r} to one")
        return self.images[repository]

    def _docker_run(self, name: str, args: list[str]) -> str:
        self._containers.append(name)
        docker("run", "-d", "--name", name, *args)
        return name

    def _wait_exit(self, name: str, timeout: float) -> int:
        try:
            return int(docker("wait", name, timeout=timeout).stdout.strip())
        except DockerTimeout:
            raise PodError(f"{name} did not finish within {timeout:.0f} s") from None

    def _claims(self, workload: dict, pod_name: str) -> dict[str, str]:
        """Docker volumes for the pod's PersistentVolumeClaims (templates: one per pod)."""
        claims = {}
        templates = [t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])]
        for v in workload["spec"]["template"]["spec"].get("volumes", []):
            if "persistentVolumeClaim" in v:
                templates.append(v["persistentVolumeClaim"]["claimName"])
        for claim in templates:
            volume = f"pwk8s-{self.run_id}-{claim}-{pod_name}"
            docker("volume", "create", "--label", f"{LABEL}={self.run_id}", volume)
            self._volumes.append(volume)
            for v in workload["spec"]["template"]["spec"].get("volumes", []):
                if v.get("persistentVolumeClaim", {}).get("claimName") == claim:
                    claims[v["name"]] = volume
            claims.setdefault(claim, volume)
        return claims

    # --- pods --------------------------------------------------------------------------------

    def _pod_name(self, workload: dict, index: int) -> str:
        name = workload["metadata"]["name"]
        if workload["kind"] == "StatefulSet":
            return f"{name}-{index}"
        suffix = secrets.token_hex(3)[:5]
        if workload["kind"] == "Job":
            return f"{name}-{suffix}"
        # Like a ReplicaSet's pods: the pod-template-hash, then a random suffix.
        template_hash = hashlib.sha256(json.dumps(workload["spec"]["template"], sort_keys=True).encode()).hexdigest()
        return f"{name}-{template_hash[:10]}-{suffix}"

    def _run_init_containers(self, workload: dict, pod_name: str, claims: dict[str, str], timeout: float):
        for init in workload["spec"]["template"]["spec"].get("initContainers", []):
            name = f"pwk8s-{self.run_id}-{pod_name}-{init['name']}"
            self.log(f"  {pod_name}: init container {init['name']}")
            self._docker_run(name, self.run_args(workload, pod_name, init, aliases=[], publish=[], claims=claims))
            code = self._wait_exit(name, timeout)
            if code != 0:
                raise PodError(f"{pod_name}: init container {init['name']} exited {code}:\n{self.tail(name)}")

    def start(self, kind: str, name: str, *, timeout: float = 180) -> list[Pod]:
        """Start every replica of a Deployment or StatefulSet; return once all are Ready."""
        workload = self.get(kind, name)
        return self._start_pods(workload, range(self.replicas(workload)), timeout)

    def scale(self, kind: str, name: str, replicas: int, *, timeout: float = 180) -> list[Pod]:
        """Add pods to a started workload up to `replicas` (a scale-out); return the new ones, Ready."""
        workload = self.get(kind, name)
        running = sum(1 for p in self.pods if p.workload is workload)
        assert replicas > running, f"{kind}/{name} already has {running} pods"
        return self._start_pods(workload, range(running, replicas), timeout)

    def _start_pods(self, workload: dict, indices: range, timeout: float) -> list[Pod]:
        kind, name = workload["kind"], workload["metadata"]["name"]
        template = workload["spec"]["template"]
        (container,) = template["spec"]["containers"]  # one container per pod here
        aliases_base = self.services_for(template["metadata"].get("labels", {}), container)
        started = []
        for index in indices:
            pod_name = self._pod_name(workload, index)
            self.log(f"{kind}/{name}: pod {pod_name} (Services: {', '.join(aliases_base) or 'none'})")
            claims = self._claims(workload, pod_name)
            self._run_init_containers(workload, pod_name, claims, timeout)
            aliases = [pod_name] + [
                f"{s}{suffix}"
                for s in aliases_base
                for suffix in (
                    "",
                    f".{self.namespace}",
                    f".{self.namespace}.svc",
                    f".{self.namespace}.svc.cluster.local",
                )
            ]
            publish = [
                self.container_port(container, p.get("targetPort", p["port"]))
                for s in aliases_base
                if s in self.publish
                for p in self.get("Service", s)["spec"]["ports"]
                if p["port"] == self.publish[s]
            ]
            cname = self._docker_run(
                f"pwk8s-{self.run_id}-{pod_name}",
                self.run_args(
                    workload, pod_name, container, aliases=aliases, publish=publish if index == 0 else [], claims=claims
                ),
            )
            pod = Pod(pod_name, workload, cname, services=aliases_base)
            pod.ip = self._ip(cname)
            started.append(pod)
        for pod in started:
            self.wait_ready(pod, container, timeout)
        self.pods += started
        return started

    def run_job(self, name: str, *, timeout: float = 300) -> str:
        """Run a Job's pod to completion (retried up to backoffLimit); returns its logs."""
        job = self.get("Job", name)
        (container,) = job["spec"]["template"]["spec"]["containers"]
        attempts = min(job["spec"].get("backoffLimit", 6) + 1, 3)
        for attempt in range(1, attempts + 1):
            pod_name = self._pod_name(job, attempt)
            self.log(f"Job/{name}: pod {pod_name} (attempt {attempt}/{attempts})")
            claims = self._claims(job, pod_name)
            self._run_init_containers(job, pod_name, claims, timeout)
            cname = self._docker_run(
                f"pwk8s-{self.run_id}-{pod_name}",
                self.run_args(job, pod_name, container, aliases=[pod_name], publish=[], claims=claims),
            )
            if self._wait_exit(cname, timeout) == 0:
                return self.tail(cname, 200)
            time.sleep(min(2**attempt, 10))
        raise PodError(f"Job/{name} failed {attempts} times:\n{self.tail(cname)}")

    def published(self, service: str) -> str:
        """host:port on 127.0.0.1 of the Service's published port (its first pod)."""
        port = self.publish[service]
        pod = next(p for p in self.pods if service in p.services)
        (container,) = pod.workload["spec"]["template"]["spec"]["containers"]
        svc_port = next(p for p in self.get("Service", service)["spec"]["ports"] if p["port"] == port)
        target = self.container_port(container, svc_port.get("targetPort", port))
        return docker("port", pod.container, f"{target}/tcp").stdout.splitlines()[0].strip()

    # --- state and probes --------------------------------------------------------------------

    def _ip(self, name: str) -> str:
        networks = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", name).stdout)
        return networks[self.network]["IPAddress"]

    def tail(self, name: str, lines: int = 60) -> str:
        out = docker("logs", "--tail", str(lines), name, check=False)
        return (out.stdout + out.stderr).strip()

    def _running(self, pod: Pod) -> bool:
        state = docker("inspect", "--format", "{{.State.Status}}", pod.container).stdout.strip()
        return state == "running"

    def probe(self, pod: Pod, container: dict, probe: dict) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                http = probe["httpGet"]
                port = self.container_port(container, http["port"])
                headers = {h["name"]: h["value"] for h in http.get("httpHeaders", [])}
                url = f"{http.get('scheme', 'HTTP').lower()}://{pod.ip}:{port}{http.get('path', '/')}"
                return 200 <= requests.get(url, headers=headers, timeout=timeout).status_code < 400
            if "exec" in probe:
                return (
                    docker(
                        "exec", pod.container, *probe["exec"]["command"], check=False, timeout=timeout + 5
                    ).returncode
                    == 0
                )
            if "tcpSocket" in probe:
                port = self.container_port(container, probe["tcpSocket"]["port"])
                with socket.create_connection((pod.ip, port), timeout=timeout):
                    return True
        except (requests.RequestException, OSError, DockerTimeout):
            return False
        raise PodError(f"unsupported probe {probe}")

    def wait_ready(self, pod: Pod, container: dict, timeout: float) -> None:
        """Startup, then readiness, then liveness must pass, each within what the kubelet allows
        (initialDelay + period × failureThreshold; readiness within `timeout`)."""
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            period = probe.get("periodSeconds", 10)
            budget = probe.get("initialDelaySeconds", 0) + period * probe.get("failureThreshold", 3)
            allowed = timeout if kind == "readinessProbe" else max(budget, 10)
            deadline = time.monotonic() + allowed
            while not self.probe(pod, container, probe):
                if not self._running(pod):
                    raise PodError(f"{pod.name} exited before its {kind} passed:\n{self.tail(pod.container)}")
                if time.monotonic() > deadline:
                    raise PodError(f"{pod.name}: {kind} still failing after {allowed} s:\n{self.tail(pod.container)}")
                time.sleep(min(period, 1))
            self.log(f"  {pod.name}: {kind} ok")
