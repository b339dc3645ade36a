"""A group's lease as a ``coordination.k8s.io/v1`` Lease, with the single host's conflict rules.

Taken when free, expired, or held by the same holder (a renewal); otherwise Conflict naming
the holder and the seconds left. Writes carry the read ``resourceVersion``, so two takers
racing on a real API server cannot both win (the loser gets 409 and reads again). The
``stable`` member (the one holding all traffic when the lease was taken) rides along as an
annotation for whoever must give traffic back when the lease lapses.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from airflow_eas.errors import Conflict, InvalidSpec
from airflow_eas.platform.base import Lease
from airflow_eas.platform.kubernetes.api import KubeApi
from airflow_eas.platform.kubernetes.manifests import GROUP_LABEL, MANAGED, PREFIX, k8s_name
from airflow_eas.platform.kubernetes.status import timestamp

STABLE_ANNOTATION = f"{PREFIX}/stable"
MAX_TTL_SECONDS = 7 * 86400


def _micro_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expires_at(lease: dict[str, Any]) -> float:
    spec = lease.get("spec") or {}
    renewed = timestamp(spec.get("renewTime")) or timestamp(spec.get("acquireTime")) or 0.0
    return renewed + float(spec.get("leaseDurationSeconds") or 0)


def acquire(api: KubeApi, namespace: str, group: str, holder: str, ttl_seconds: float,
            stable: str | None = None) -> Lease:
    if not holder:
        raise InvalidSpec("holder: a non-empty string naming who takes the lease is required")
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidSpec(f"ttl_seconds: {ttl_seconds!r} is not a number of seconds from 1 to {MAX_TTL_SECONDS}")
    name = k8s_name(group)
    for _ in range(3):  # a lost race is read again, never overwritten
        now = time.time()
        current = api.find("Lease", namespace, name)
        spec = {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(ttl_seconds)),
                "renewTime": _micro_time(now)}
        annotations = {STABLE_ANNOTATION: stable} if stable else {}
        if current is None:
            spec["acquireTime"] = spec["renewTime"]
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace, "labels": {**MANAGED, GROUP_LABEL: group},
                                 "annotations": annotations},
                    "spec": spec}
            try:
                api.create(body)
            except Conflict:
                continue
            return Lease(group, holder, now + spec["leaseDurationSeconds"])
        held_by = (current.get("spec") or {}).get("holderIdentity")
        left = expires_at(current) - now
        if held_by and held_by != holder and left > 0:
            raise Conflict(f"group {group!r} is leased by {held_by!r} for {int(left)} s more")
        if held_by != holder:
            spec["acquireTime"] = spec["renewTime"]
        meta: dict[str, Any] = {"annotations": annotations} if annotations else {}
        version = (current.get("metadata") or {}).get("resourceVersion")
        if version:
            meta["resourceVersion"] = version
        try:
            api.patch("Lease", namespace, name, {"metadata": meta, "spec": spec})
        except Conflict:
            continue
        return Lease(group, holder, now + spec["leaseDurationSeconds"])
    raise Conflict(f"group {group!r}: the lease changed hands while taking it; try again")


def release(api: KubeApi, namespace: str, group: str, holder: str) -> None:
    """Give the lease back if ``holder`` has it (anyone else's lease is left alone, as on one host)."""
    current = api.find("Lease", namespace, k8s_name(group))
    if current is None or (current.get("spec") or {}).get("holderIdentity") != holder:
        return
    api.delete("Lease", namespace, k8s_name(group))


def stable_member(lease: dict[str, Any]) -> str | None:
    return ((lease.get("metadata") or {}).get("annotations") or {}).get(STABLE_ANNOTATION)
