"""A group's lease as a ``coordination.k8s.io/v1`` Lease, with the single host's rules.

Taken when free, expired, revoked, or held by the same holder; otherwise Conflict naming the
holder and the seconds left. Writes carry the read ``resourceVersion``, so two takers racing on
a real API server cannot both win (the loser gets 409 and reads again).

What the single host's guard keeps in its store rides on the Lease as annotations: the
``stable`` member (all traffic goes back to it), the ``guard`` settings (JSON), and, once
someone gave the group back, ``state: revoked`` with the ``reason`` (or ``state: lapsed``: it
expired with nothing split). ``eas guard`` (``airflow_eas/guard.py``, run in the cluster) acts on
them as ``eas server`` does on one host; a revoked lease is never renewed, so the run learns at
its next heartbeat that it lost the group.

:func:`lead` is the guard's own leader election on a Lease of its own (not a group's).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from airflow_eas.errors import Conflict, InvalidSpec, RolloutAborted
from airflow_eas.platform.base import LEASE_HELD, LEASE_LAPSED, LEASE_REVOKED, GuardSettings, Lease
from airflow_eas.platform.kubernetes.api import KubeApi
from airflow_eas.platform.kubernetes.manifests import GROUP_LABEL, MANAGED, PREFIX, k8s_name
from airflow_eas.platform.kubernetes.status import timestamp

STABLE_ANNOTATION = f"{PREFIX}/stable"
GUARD_ANNOTATION = f"{PREFIX}/guard"
STATE_ANNOTATION = f"{PREFIX}/state"
REASON_ANNOTATION = f"{PREFIX}/reason"
MAX_TTL_SECONDS = 7 * 86400


def _micro_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expires_at(lease: dict[str, Any]) -> float:
    spec = lease.get("spec") or {}
    renewed = timestamp(spec.get("renewTime")) or timestamp(spec.get("acquireTime")) or 0.0
    return renewed + float(spec.get("leaseDurationSeconds") or 0)


def _annotations(lease: dict[str, Any]) -> dict[str, str]:
    return (lease.get("metadata") or {}).get("annotations") or {}


def to_lease(group: str, lease: dict[str, Any]) -> Lease:
    """The :class:`Lease` a Lease object records (``lapsed`` once it expired without a revocation)."""
    notes = _annotations(lease)
    spec = lease.get("spec") or {}
    ends = expires_at(lease)
    state = notes.get(STATE_ANNOTATION) or (LEASE_HELD if ends > time.time() else LEASE_LAPSED)
    guard = GuardSettings.from_dict(json.loads(notes[GUARD_ANNOTATION])) if notes.get(GUARD_ANNOTATION) else None
    ttl = spec.get("leaseDurationSeconds")
    return Lease(group, spec.get("holderIdentity") or "", ends, notes.get(STABLE_ANNOTATION), guard,
                 float(ttl) if ttl is not None else None, state, notes.get(REASON_ANNOTATION, ""))


def _check(holder: str, ttl_seconds: float) -> None:
    if not isinstance(holder, str) or not holder:
        raise InvalidSpec("holder: a non-empty string naming who takes the lease is required")
    if not isinstance(ttl_seconds, (int, float)) or isinstance(ttl_seconds, bool) \
            or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidSpec(f"ttl_seconds: {ttl_seconds!r} is not a number of seconds from 1 to {MAX_TTL_SECONDS}")


def get(api: KubeApi, namespace: str, group: str) -> Lease | None:
    current = api.find("Lease", namespace, k8s_name(group))
    return None if current is None else to_lease(group, current)


def acquire(api: KubeApi, namespace: str, group: str, holder: str, ttl_seconds: float, *,
            stable: str | None = None, guard: GuardSettings | None = None) -> Lease:
    _check(holder, ttl_seconds)
    name = k8s_name(group)
    # Every write names all four: a new holder must not inherit the last one's stable member or revocation.
    annotations = {STABLE_ANNOTATION: stable, GUARD_ANNOTATION: json.dumps(guard.to_dict()) if guard else None,
                   STATE_ANNOTATION: None, REASON_ANNOTATION: None}
    for _ in range(3):  # a lost race is read again, never overwritten
        now = time.time()
        current = api.find("Lease", namespace, name)
        spec = {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(ttl_seconds)),
                "renewTime": _micro_time(now)}
        if current is None:
            spec["acquireTime"] = spec["renewTime"]
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace, "labels": {**MANAGED, GROUP_LABEL: group},
                                 "annotations": {k: v for k, v in annotations.items() if v is not None}},
                    "spec": spec}
            try:
                return to_lease(group, api.create(body))
            except Conflict:
                continue
        seen = to_lease(group, current)
        if seen.holder == holder and seen.revoked:
            raise RolloutAborted(seen.reason or f"group {group!r}: the lease was revoked")
        if seen.holder and seen.holder != holder and seen.state == LEASE_HELD:
            raise Conflict(f"group {group!r} is leased by {seen.holder!r} for {int(seen.expires_at - now)} s more")
        if seen.holder != holder:
            spec["acquireTime"] = spec["renewTime"]
        try:
            return to_lease(group, _patch(api, namespace, current, annotations, spec))
        except Conflict:
            continue
    raise Conflict(f"group {group!r}: the lease changed hands while taking it; try again")


def renew(api: KubeApi, namespace: str, group: str, holder: str, ttl_seconds: float, *,
          stable: str | None = None) -> Lease:
    """The holder's heartbeat: RolloutAborted once revoked, Conflict once another holder has the group."""
    _check(holder, ttl_seconds)
    for _ in range(3):
        current = api.find("Lease", namespace, k8s_name(group))
        if current is None:  # released meanwhile: take the group again if it is free
            return acquire(api, namespace, group, holder, ttl_seconds, stable=stable)
        seen = to_lease(group, current)
        if seen.holder != holder:
            raise Conflict(f"group {group!r} is leased by {seen.holder!r}, not {holder!r}: the lease was lost")
        if seen.revoked:
            raise RolloutAborted(seen.reason or f"group {group!r}: the lease was revoked")
        spec = {"leaseDurationSeconds": max(1, round(ttl_seconds)), "renewTime": _micro_time(time.time())}
        # A lapsed lease (nothing was split) is held again, with its stable member and guard.
        annotations: dict[str, Any] = {STATE_ANNOTATION: None, REASON_ANNOTATION: None}
        if stable:
            annotations[STABLE_ANNOTATION] = stable
        try:
            return to_lease(group, _patch(api, namespace, current, annotations, spec))
        except Conflict:
            continue  # someone wrote between our read and write (a revocation?): read it again
    raise Conflict(f"group {group!r}: the lease kept changing while renewing it; try again")


def _patch(api: KubeApi, namespace: str, current: dict[str, Any], annotations: dict[str, Any],
           spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"annotations": annotations} if annotations else {}
    version = (current.get("metadata") or {}).get("resourceVersion")
    if version:
        meta["resourceVersion"] = version
    return api.patch("Lease", namespace, current["metadata"]["name"], {"metadata": meta, "spec": spec})


def release(api: KubeApi, namespace: str, group: str, holder: str) -> None:
    """Give the lease back if ``holder`` has it (anyone else's lease is left alone, as on one host)."""
    current = api.find("Lease", namespace, k8s_name(group))
    if current is None or (current.get("spec") or {}).get("holderIdentity") != holder:
        return
    api.delete("Lease", namespace, k8s_name(group))


def watched(api: KubeApi, namespace: str) -> list[Lease]:
    """The groups' leases the guard watches: every one not yet marked revoked or lapsed, expired ones included."""
    out = []
    for obj in api.list("Lease", namespace, dict(MANAGED)):
        group = ((obj.get("metadata") or {}).get("labels") or {}).get(GROUP_LABEL)
        if group and not _annotations(obj).get(STATE_ANNOTATION):
            out.append(to_lease(group, obj))
    return out


def mark(api: KubeApi, namespace: str, lease: Lease, state: str, reason: str) -> None:
    """Mark ``lease`` revoked or lapsed with ``reason``, if its holder still has it.

    Conditional on the read ``resourceVersion``: a heartbeat racing the mark is read again and
    marked anyway (the traffic already went back); a new holder's lease is left alone.
    """
    if state not in (LEASE_REVOKED, LEASE_LAPSED):
        raise InvalidSpec(f"state: {state!r} is not {LEASE_REVOKED} or {LEASE_LAPSED}")
    for _ in range(3):
        current = api.find("Lease", namespace, k8s_name(lease.group))
        if current is None or (current.get("spec") or {}).get("holderIdentity") != lease.holder:
            return  # released, or taken by the next rollout: nothing of this lease is left to mark
        if state == LEASE_LAPSED and _annotations(current).get(STATE_ANNOTATION) == LEASE_REVOKED:
            return
        if state == LEASE_LAPSED and expires_at(current) > time.time():
            return  # renewed meanwhile: it holds again
        try:
            _patch(api, namespace, current, {STATE_ANNOTATION: state, REASON_ANNOTATION: reason}, {})
            return
        except Conflict:
            continue
    raise Conflict(f"group {lease.group!r}: the lease kept changing while marking it {state}")


def lead(api: KubeApi, namespace: str, name: str, identity: str, ttl_seconds: float) -> bool:
    """Take or renew the Lease ``name`` for ``identity``; False while another holds it unexpired.

    Leader election for ``eas guard``: every write is conditional on the read ``resourceVersion``,
    so of two guards racing for a free or expired Lease exactly one wins.
    """
    now = time.time()
    spec = {"holderIdentity": identity, "leaseDurationSeconds": max(1, round(ttl_seconds)),
            "renewTime": _micro_time(now)}
    current = api.find("Lease", namespace, name)
    try:
        if current is None:
            spec["acquireTime"] = spec["renewTime"]
            api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED)}, "spec": spec})
            return True
        holder = (current.get("spec") or {}).get("holderIdentity")
        if holder and holder != identity and expires_at(current) > now:
            return False
        if holder != identity:
            spec["acquireTime"] = spec["renewTime"]
        _patch(api, namespace, current, {}, spec)
        return True
    except Conflict:
        return False  # another guard wrote first: it leads


def resign(api: KubeApi, namespace: str, name: str, identity: str) -> None:
    """Give the leader Lease back at shutdown, so a standby takes over at once instead of after its TTL."""
    current = api.find("Lease", namespace, name)
    if current is not None and (current.get("spec") or {}).get("holderIdentity") == identity:
        api.delete("Lease", namespace, name)
