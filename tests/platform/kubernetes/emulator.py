"""An emulated API server (kmock's KubernetesEmulator, real HTTP on loopback) and the test playing its controllers.

No API server can run here (notes/kubernetes.md), so ``Cluster`` stands in for one: objects are
stored and served over HTTP to the official client, but nothing reconciles them. ``Controllers``
does, in the test: it plays the Deployment/ReplicaSet controllers, the scheduler and the kubelet
(pods created for the current version, made ready or stuck as the test asks, old ones removed,
the Deployment's status written through its ``status`` subresource).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as kube_config

from airflow_eas.platform.kubernetes.api import KubeApi
from airflow_eas.platform.kubernetes.manifests import SERVICE_LABEL, VERSION_ANNOTATION, VERSION_LABEL
from tests.platform.kubernetes.emulator_server import LOG_ANNOTATION

NAMESPACE = "ml"


class Cluster:
    """kmock's emulator on a loopback port, in a process of its own (emulator_server.py)."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Cluster:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.platform.kubernetes.emulator_server"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the emulated API server did not start: {line!r}")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, folder: Path, namespace: str = NAMESPACE) -> Path:
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "tester",
                                                          "namespace": namespace}}],
        }))
        return path

    def api(self, folder: Path) -> KubeApi:
        return KubeApi(kube_config.new_client_from_config(config_file=str(self.kubeconfig(folder))))


# What the kubelet makes of a pod: ready, or stuck the way the test wants.
READY = "ready"
IMAGE_PULL = "image"
CRASH = "crash"
UNSCHEDULABLE = "unschedulable"
PENDING = "pending"


@dataclass
class Controllers:
    """The Deployment + ReplicaSet controllers, scheduler and kubelet, one ``step()`` at a time."""

    api: KubeApi
    cluster: Cluster
    namespace: str = NAMESPACE
    # (service, version) -> behaviour; default READY. A callable decides per call.
    behaviour: dict[tuple[str, int], str] = field(default_factory=dict)
    on_ready: Callable[[str, int], None] | None = None
    _serial: int = 0

    def step(self) -> None:
        deployments = {d["metadata"]["name"]: d for d in self.api.list("Deployment", self.namespace)}
        pods = self.api.list("Pod", self.namespace)
        for pod in pods:  # the garbage collector: pods of deleted Deployments go
            owner = pod["metadata"].get("labels", {}).get("app.kubernetes.io/name")
            if owner not in deployments:
                self.api.delete("Pod", self.namespace, pod["metadata"]["name"])
        for name, dep in deployments.items():
            self._reconcile(name, dep, [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name")
                                        == name])

    def _reconcile(self, name: str, dep: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        service = dep["metadata"]["labels"][SERVICE_LABEL]
        version = int(dep["metadata"]["annotations"][VERSION_ANNOTATION])
        replicas = int(dep["spec"].get("replicas", 1))
        current = [p for p in pods if int(p["metadata"]["labels"][VERSION_LABEL]) == version]
        old = [p for p in pods if p not in current]
        kind = self.behaviour.get((service, version), READY)
        for _ in range(len(current), replicas):
            current.append(self._create_pod(dep, service, version, kind))
        for extra in current[replicas:]:
            self.api.delete("Pod", self.namespace, extra["metadata"]["name"])
        current = current[:replicas]
        ready = sum(1 for p in current if kind == READY)
        if ready >= replicas:  # the rolling update: old pods go once the new ones serve
            for pod in old:
                self.api.delete("Pod", self.namespace, pod["metadata"]["name"])
            old = []
        status = {
            "observedGeneration": int(dep["metadata"].get("generation", 1)),
            "replicas": len(current) + len(old), "updatedReplicas": len(current),
            "readyReplicas": ready, "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready >= replicas else "False"},
                           {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"
                            if ready >= replicas else "ReplicaSetUpdated"}],
        }
        if dep.get("status") != status:
            self.api.patch("Deployment", self.namespace, name, {"status": status}, sub="status")
        if ready >= replicas and replicas and self.on_ready:
            self.on_ready(service, version)

    def _create_pod(self, dep: dict[str, Any], service: str, version: int, kind: str) -> dict[str, Any]:
        self._serial += 1
        template = dep["spec"]["template"]
        name = f"{dep['metadata']['name']}-v{version}-{self._serial:04x}"
        container = template["spec"]["containers"][0]
        cs: dict[str, Any] = {"name": container["name"], "image": container["image"], "restartCount": 0,
                              "ready": kind == READY}
        conditions = [{"type": "PodScheduled", "status": "True"}]
        if kind == READY:
            cs["state"] = {"running": {"startedAt": "2026-11-25T10:00:00Z"}}
            conditions.append({"type": "Ready", "status": "True"})
        elif kind == IMAGE_PULL:
            cs["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                       "message": f'Back-off pulling image "{container["image"]}"'}}
        elif kind == CRASH:
            cs.update(restartCount=4, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                      lastState={"terminated": {"exitCode": 3, "reason": "Error"}})
            log = "loading model\nTraceback (most recent call last):\nValueError: bad model file\n"
        elif kind == UNSCHEDULABLE:
            conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]
            cs = {}
        else:
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
        if kind != CRASH:
            log = f"{name} started\n{name} ready\n"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": dict(template["metadata"]["labels"]),
                         "annotations": {LOG_ANNOTATION: log},
                         "creationTimestamp": f"2026-11-25T10:{self._serial // 60 % 60:02d}:{self._serial % 60:02d}Z"},
            "spec": template["spec"],
            "status": {"phase": "Running" if kind == READY else "Pending", "podIP": f"10.0.0.{self._serial % 250}",
                       "startTime": "2026-11-25T10:00:00Z", "conditions": conditions,
                       "containerStatuses": [cs] if cs else []},
        }
        return self.api.create(pod)


class Loop:
    """Runs ``Controllers.step`` in a background thread (for tests that only watch, like dag.test())."""

    def __init__(self, controllers: Controllers, interval: float = 0.3) -> None:
        self.controllers = controllers
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.controllers.step()
            except Exception as exc:  # noqa: BLE001 - an object deleted mid-step: the next step sees it
                self.errors.append(repr(exc))

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
