"""A Deployment and its pods -> EAS status, the reason a user needs, and the instance list.

Only the Deployment's own fields and conditions and the pods' statuses are read: what a real
Deployment controller, ReplicaSet controller, scheduler and kubelet report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_eas.platform.base import (
    CREATING,
    DELETING,
    FAILED,
    RUNNING,
    SCALING,
    STOPPED,
    STOPPING,
    UPDATING,
    InstanceInfo,
)
from airflow_eas.platform.kubernetes.manifests import STOPPED_ANNOTATION, VERSION_ANNOTATION, VERSION_LABEL

# Waiting reasons that do not heal by waiting: the service is Failed (the old version keeps serving).
IMAGE_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CRASH_REASONS = ("CrashLoopBackOff",)
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
LOG_LINES_IN_REASON = 5

LogTail = Callable[[str, str], str]  # (pod, container) -> last log lines


@dataclass
class Observed:
    status: str
    reason: str
    wanted: int
    version: int
    instances: list[InstanceInfo] = field(default_factory=list)

    @property
    def running(self) -> int:
        return sum(1 for i in self.instances if i.status == RUNNING)


def timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def observe(deployment: dict[str, Any], pods: list[dict[str, Any]], port: int, log_tail: LogTail) -> Observed:
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    version = int((meta.get("annotations") or {}).get(VERSION_ANNOTATION, 1))
    wanted = int(spec.get("replicas", 1))
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    instances = [_instance(p, port) for p in sorted(live, key=_created)]
    current = [i for i in instances if i.version == version]
    old = [i for i in instances if i.version != version]

    def result(status: str, reason: str = "") -> Observed:
        return Observed(status, reason, wanted, version, instances)

    if meta.get("deletionTimestamp"):
        return result(DELETING)
    failure = _pod_failure([p for p in live if _version(p) == version], log_tail)
    if failure:
        return result(FAILED, failure)
    deadline = _condition(deployment, "Progressing")
    if deadline and deadline.get("status") == "False" and deadline.get("reason") == "ProgressDeadlineExceeded":
        return result(FAILED, f"ProgressDeadlineExceeded: {deadline.get('message') or 'the rollout made no progress'}")
    if wanted == 0:
        stopped = (meta.get("annotations") or {}).get(STOPPED_ANNOTATION) == "true"
        return result(STOPPING if instances else STOPPED, "" if stopped or not instances else "scaling to 0")
    waiting = _scheduling(live)
    ready_current = sum(1 for i in current if i.status == RUNNING)
    if ready_current >= wanted and not old and len(current) <= wanted:
        return result(RUNNING)
    if old:
        status = UPDATING
    elif not any(i.status == RUNNING for i in instances):
        status = CREATING
    else:
        status = SCALING
    return result(status, waiting)


def _version(pod: dict[str, Any]) -> int:
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL, 0))
    except ValueError:
        return 0


def _created(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('creationTimestamp') or ''}{meta.get('name')}"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _instance(pod: dict[str, Any], port: int) -> InstanceInfo:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ip = status.get("podIP")
    if _ready(pod):
        state = RUNNING
    elif any(_waiting_reason(c) in IMAGE_REASONS + CRASH_REASONS + CONFIG_REASONS for c in containers):
        state = FAILED
    else:
        state = CREATING
    return InstanceInfo(
        id=(pod.get("metadata") or {}).get("name", ""),
        address=f"{ip}:{port}" if ip else "",
        status=state,
        version=_version(pod),
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        started_at=timestamp(status.get("startTime")),
    )


def _waiting_reason(container_status: dict[str, Any]) -> str:
    return (((container_status.get("state") or {}).get("waiting")) or {}).get("reason") or ""


def _pod_failure(pods: list[dict[str, Any]], log_tail: LogTail) -> str:
    """The first reason a current-version pod cannot run that waiting will not cure."""
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        images = {c.get("name"): c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
        statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
        statuses = statuses + ((pod.get("status") or {}).get("containerStatuses") or [])
        for cs in statuses:
            reason = _waiting_reason(cs)
            message = ((cs.get("state") or {}).get("waiting") or {}).get("message") or ""
            container = cs.get("name", "")
            if reason in IMAGE_REASONS:
                image = cs.get("image") or images.get(container) or "?"
                return f"{reason}: pod {name} cannot pull image {image}" + (f": {message}" if message else "")
            if reason in CRASH_REASONS:
                restarts = int(cs.get("restartCount") or 0)
                last = ((cs.get("lastState") or {}).get("terminated")) or {}
                exit_part = f", last exit code {last['exitCode']}" if "exitCode" in last else ""
                tail = _tail(log_tail, name, container)
                return (f"CrashLoopBackOff: container {container} of pod {name} restarted {restarts} times"
                        f"{exit_part}; last log lines: {tail}")
            if reason in CONFIG_REASONS:
                return f"{reason}: pod {name}: {message or 'the container cannot be created'}"
    return ""


def _tail(log_tail: LogTail, pod: str, container: str) -> str:
    try:
        lines = [line for line in log_tail(pod, container).splitlines() if line.strip()]
    except Exception:  # noqa: BLE001 - the reason must still be given without the logs
        return "(logs unavailable)"
    return " | ".join(lines[-LOG_LINES_IN_REASON:]) or "(none)"


def _scheduling(pods: list[dict[str, Any]]) -> str:
    """The scheduler's message for a pod it cannot place (not Failed: an autoscaler may add a node)."""
    for pod in pods:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
                name = (pod.get("metadata") or {}).get("name", "")
                return f"Unschedulable: pod {name}: {c.get('message') or 'no node fits'}"
    return ""


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)
