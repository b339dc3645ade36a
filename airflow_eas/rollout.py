"""Blue/green rollout logic on any :class:`Platform`, apart from Airflow.

A group's members are ``<group>_blue`` and ``<group>_green``; the idle member (no traffic,
or not deployed yet) takes the new version, the live member keeps serving until the new
one is promoted. Everything here talks only to a :class:`Platform`, so it is tested
against an in-memory one; the operators in :mod:`airflow_eas.operators` only orchestrate
these steps (templating, deferral, XCom, links).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from airflow_eas.asset_refs import resolve_value
from airflow_eas.errors import Conflict, EasError, InvalidSpec, NotFound, RolloutAborted
from airflow_eas.platform.aio import AsyncPlatform
from airflow_eas.platform.base import (
    RUNNING,
    GroupInfo,
    GroupMember,
    GuardSettings,
    Lease,
    Platform,
    ServiceInfo,
)
from airflow_eas.spec import REDACTED_USERINFO, ServiceSpec, check_name, parse_spec, spec_dict

MEMBER_SUFFIXES = ("blue", "green")
ScaleDown = Literal["stop", "zero", "keep"]
SCALE_DOWN_MODES: tuple[str, ...] = ("stop", "zero", "keep")

# -- members -----------------------------------------------------------------------------------


def member_names(group: str) -> tuple[str, str]:
    """The blue/green member names of ``group``."""
    check_name(group, "group")
    return f"{group}_{MEMBER_SUFFIXES[0]}", f"{group}_{MEMBER_SUFFIXES[1]}"


def describe_group_or_empty(platform: Platform, group: str) -> GroupInfo:
    """The group, or an empty one when it does not exist yet (before its first deploy)."""
    try:
        return platform.describe_group(group)
    except NotFound:
        return GroupInfo(name=group, endpoint="", token="", members=[])


def live_members(info: GroupInfo, *, exclude: str | None = None) -> list[GroupMember]:
    """Members with traffic, heaviest first."""
    live = [m for m in info.members if m.weight > 0 and m.service != exclude]
    return sorted(live, key=lambda m: (-m.weight, m.service))


def pick_idle_member(group: str, info: GroupInfo) -> str:
    """The member a new version goes to: the one without traffic (blue on an empty group).

    Deterministic, so a retried deploy picks the same member and updates it instead of
    making a second service.
    """
    blue, green = member_names(group)
    weights = {m.service: m.weight for m in info.members}
    idle = [name for name in (blue, green) if weights.get(name, 0) == 0]
    if not idle:
        raise Conflict(
            f"group {group}: both {blue} ({weights[blue]}%) and {green} ({weights[green]}%) serve traffic; "
            "finish or roll back the previous rollout first"
        )
    return idle[0]


# -- deploy ------------------------------------------------------------------------------------


@dataclass
class DeployTarget:
    """Where a deploy goes: the service, its group, and the group's live member before it."""

    service: str
    group: str | None = None
    previous: str | None = None


def plan_deploy(platform: Platform, *, group: str | None, service: str | None) -> DeployTarget:
    """The service a deploy writes: ``service``, or the group's idle member; never a live one."""
    if not group:
        if not service:
            raise InvalidSpec("deploy: give group (deploy to its idle member) or service")
        return DeployTarget(service=service)
    info = describe_group_or_empty(platform, group)
    name = service or pick_idle_member(group, info)
    weight = info.weight_of(name)
    if weight > 0:
        raise Conflict(f"{name} serves {weight}% of group {group}'s traffic; refusing to redeploy it")
    live = live_members(info, exclude=name)
    return DeployTarget(service=name, group=group, previous=live[0].service if live else None)


def member_spec(
    template: Mapping[str, Any] | str, target: DeployTarget, *, model_path: str | None = None
) -> ServiceSpec:
    """The spec of ``target`` from a template without a name: name, group and model path set here."""
    data = copy.deepcopy(spec_dict(template))
    data["name"] = target.service
    if target.group:
        data.setdefault("metadata", {})["group"] = target.group
    if model_path:
        data["model_path"] = model_path
    return parse_spec(data)


def deploy_result(info: ServiceInfo, target: DeployTarget, spec: ServiceSpec) -> dict[str, Any]:
    """What a deploy reports (the deploy operator's XCom; later steps template from it)."""
    return {
        "service": info.name,
        "version": info.version,
        "endpoint": info.endpoint,
        "group": target.group,
        "previous": target.previous,
        "status": info.status,
        "model_path": spec.model_path,
    }


# -- waiting -----------------------------------------------------------------------------------


def wait_until_ready(platform: Platform, name: str, *, timeout: float, poll_interval: float = 1.0) -> ServiceInfo:
    """Wait until every wanted instance of ``name``'s current version serves; EasError (retryable) at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        info = platform.describe(name)
        if info.ready:
            return info
        if time.monotonic() >= deadline:
            raise EasError(f"{name} did not come back within {timeout:.0f} s")
        time.sleep(poll_interval)


# -- warm-up -----------------------------------------------------------------------------------


def encode_body(body: Any) -> bytes:
    """A request body as sent: bytes as they are, text UTF-8, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def read_warmup_file(uri: str, *, cache: Path | None = None) -> list[bytes]:
    """Request bodies from a warm-up file (``.jsonl``: one body a line; ``.json``: a list of bodies).

    ``uri`` is a local path, a ``file://`` URI, or an ``oss://bucket/key`` object, fetched with
    the platform's own object-store client (settings from ``EAS_OSS_*``, as ``eas server``'s).
    """
    parsed = urlparse(uri)
    if parsed.scheme == "oss":
        path = _fetch_object(uri, cache)
    elif parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else uri)
    else:
        raise InvalidSpec(f"warm-up data {uri!r}: give a local path, a file:// URI or an oss:// object")
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpec(f"cannot read warm-up data {uri}: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"warm-up data {uri} is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise InvalidSpec(f"warm-up data {uri} must hold a JSON list of request bodies")
        return [encode_body(item) for item in items]
    return [line.strip().encode() for line in text.splitlines() if line.strip()]


def _fetch_object(uri: str, cache: Path | None) -> Path:
    import tempfile

    from airflow_eas.server.storage import ObjectStore, OssConfig

    config = OssConfig.from_env()
    if not config.endpoint:
        raise InvalidSpec(f"warm-up data {uri}: set EAS_OSS_ENDPOINT (and EAS_OSS_ACCESS_KEY_ID/SECRET) to read oss://")
    folder = cache or Path(tempfile.gettempdir()) / "airflow-eas-warmup"
    return ObjectStore(config.endpoint, config).fetch(uri, folder, "warm-up data", folder=False)


def warmup_bodies(platform: Platform, service: str, *, data: list[Any] | None, data_path: str | None) -> list[bytes]:
    """The warm-up bodies: ``data``, else the file at ``data_path``, else the spec's ``warm_up_data_path``.

    A path may be ``asset:NAME``: the platform's asset of type data, as the model server resolves it."""
    if data:
        return [encode_body(b) for b in data]
    path = data_path or platform.describe(service).spec.get("warm_up_data_path")
    if not path:
        return []
    uri = resolve_value("warm_up_data_path", path, platform.asset)
    if REDACTED_USERINFO in uri:
        raise InvalidSpec(f"warm-up data {path}: the asset's URI carries credentials, which the platform does not "
                          "hand out; let the model server replay it (warm_up_data_path), or use an oss:// URI "
                          "with EAS_OSS_* settings")
    return read_warmup_file(uri)


@dataclass
class WarmUpResult:
    """Latencies (ms) of a warm-up, first call first, and the failed answers."""

    service: str
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        warm = self.latencies_ms[1:]
        return {
            "service": self.service,
            "requests": len(self.latencies_ms),
            "errors": len(self.failures),
            "cold_ms": round(self.latencies_ms[0], 2) if self.latencies_ms else None,
            "warm_p50_ms": round(statistics.median(warm), 2) if warm else None,
            "warm_max_ms": round(max(warm), 2) if warm else None,
        }


def warm_up(platform: Platform, service: str, bodies: list[bytes], *, count: int, timeout: float) -> WarmUpResult:
    """Send each body ``count`` times to ``service`` directly (not through its group)."""
    result = WarmUpResult(service)
    for _ in range(max(1, count)):
        for body in bodies:
            started = time.perf_counter()
            status, answer = platform.invoke(service, body, timeout=timeout)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if not 200 <= status < 300:
                result.failures.append(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
    return result


# -- traffic -----------------------------------------------------------------------------------


def shift_weights(info: GroupInfo, service: str, weight: int, previous: str | None = None) -> dict[str, int]:
    """Weights giving ``service`` ``weight`` percent and the others the remainder.

    The remainder goes to ``previous`` when given, else to the live members in proportion
    to their weights; a member alone in its group gets all traffic.
    """
    if not 0 <= weight <= 100:
        raise InvalidSpec(f"weight {weight}: must be between 0 and 100")
    others = live_members(info, exclude=service)
    if previous:
        others = [GroupMember(previous, max(1, info.weight_of(previous)))]
    if not others:
        return {service: 100}
    rest = 100 - weight
    total = sum(m.weight for m in others)
    weights = {service: weight}
    given = 0
    for i, member in enumerate(others):
        share = rest - given if i == len(others) - 1 else round(rest * member.weight / total)
        weights[member.service] = share
        given += share
    for member in info.members:  # members without traffic stay at 0
        weights.setdefault(member.service, 0)
    return weights


def format_weights(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(weights.items()))


# -- promote -----------------------------------------------------------------------------------


def check_scale_down(mode: str) -> str:
    if mode not in SCALE_DOWN_MODES:
        raise InvalidSpec(f"scale_down {mode!r}: choose stop, zero or keep")
    return mode


def other_members(info: GroupInfo, service: str) -> list[str]:
    return [m.service for m in info.members if m.service != service]


def promote(platform: Platform, group: str, service: str) -> list[str]:
    """Give ``service`` all of ``group``'s traffic; returns the old members (still running)."""
    info = platform.describe_group(group)
    if service not in {m.service for m in info.members}:
        raise NotFound(f"{service} is not a member of group {group}")
    weights = {m.service: 0 for m in info.members}
    weights[service] = 100
    platform.set_traffic(group, weights)
    # Every other member: a canary's last step may have moved their traffic already.
    return other_members(info, service)


@dataclass
class ScaleDownResult:
    """What :func:`scale_down_old_members` did: the members scaled down, or why it did nothing."""

    scaled_down: list[str] = field(default_factory=list)
    skipped_because: str = ""


def scale_down_old_members(platform: Platform, group: str, service: str, mode: str) -> ScaleDownResult:
    """After a promotion: stop (or scale to 0) the members without traffic.

    Stateless (the old members are the group's other members) and careful: when the group
    no longer routes everything to ``service`` (someone rolled back), nothing is touched.
    """
    info = platform.describe_group(group)
    if info.weight_of(service) != 100:
        weights = format_weights({m.service: m.weight for m in info.members})
        return ScaleDownResult(skipped_because=f"group {group} no longer routes everything to {service} ({weights})")
    if check_scale_down(mode) == "keep":
        return ScaleDownResult()
    done = []
    for name in other_members(info, service):
        if info.weight_of(name) > 0:
            continue
        try:
            current = platform.describe(name)
        except NotFound:
            continue
        if current.instances == 0:
            continue  # already scaled down
        if mode == "stop":
            platform.stop(name)
        else:
            platform.scale(name, 0)
        done.append(name)
    return ScaleDownResult(scaled_down=done)


# -- rollback ----------------------------------------------------------------------------------


def rollback(
    platform: Platform,
    group: str,
    service: str,
    previous: str | None,
    *,
    stop_service: bool = True,
    ready_timeout: float = 300,
    on_restart: Callable[[str, str], None] | None = None,
) -> dict[str, int]:
    """All traffic back to ``previous`` (started again first if it is not running); ``service`` stopped.

    Without ``previous`` (a group's first deploy) ``service`` just loses its traffic.
    Returns the weights set.
    """
    weights: dict[str, int] = {service: 0}
    if previous:
        state = platform.describe(previous)
        if state.status != RUNNING:
            if on_restart:
                on_restart(previous, state.status)
            platform.start(previous)
            wait_until_ready(platform, previous, timeout=ready_timeout)
        weights[previous] = 100
    platform.set_traffic(group, weights)
    if stop_service:
        stop_quietly(platform, service)
    return weights


def stop_quietly(platform: Platform, service: str) -> None:
    """Stop ``service``; one that is gone already is fine."""
    try:
        platform.stop(service)
    except NotFound:
        pass


# -- leases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRef:
    """Which lease a rollout task renews (JSON-safe: it travels in trigger payloads)."""

    group: str
    holder: str
    ttl_seconds: int

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "holder": self.holder, "ttl_seconds": self.ttl_seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LeaseRef | None:
        return cls(str(data["group"]), str(data["holder"]), int(data["ttl_seconds"])) if data else None


ABORTED_PREFIX = "the platform's guard reverted it: "


def stable_member(info: GroupInfo) -> str | None:
    """The member all traffic goes back to if the rollout dies: the one holding (most of) the traffic now."""
    live = live_members(info)
    return live[0].service if live else None


def acquire_lease(
    platform: Platform,
    group: str,
    holder: str,
    *,
    ttl_seconds: int,
    guard: GuardSettings | None = None,
    wait_seconds: float = 0,
    poll_interval: float = 10,
    on_wait: Callable[[Conflict], None] | None = None,
) -> Lease:
    """Take ``group``'s lease naming its stable member, waiting up to ``wait_seconds`` while another holder has it.

    The stable member is read when the lease is taken (not before waiting): the previous
    rollout may have changed the group meanwhile.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        stable = stable_member(describe_group_or_empty(platform, group))
        try:
            return platform.acquire_lease(group, holder, ttl_seconds, stable=stable, guard=guard)
        except Conflict as exc:
            if time.monotonic() + poll_interval > deadline:
                raise Conflict(f"group {group} is being changed by another rollout: {exc.message}") from exc
            if on_wait:
                on_wait(exc)
            time.sleep(poll_interval)


def heartbeat(platform: Platform, lease: LeaseRef, *, stable: str | None = None) -> Lease:
    """Renew the rollout's lease (every rollout task does, so the platform knows the run is alive).

    RolloutAborted (permanent) when the platform took the group back: its dead-man's switch
    or guard reverted the traffic; the message says why.
    """
    try:
        return platform.renew_lease(lease.group, lease.holder, lease.ttl_seconds, stable=stable)
    except RolloutAborted as exc:
        raise _reverted(exc) from None


async def heartbeat_async(platform: AsyncPlatform, lease: LeaseRef) -> Lease:
    """:func:`heartbeat` on the caller's event loop (a trigger renewing the lease while it waits)."""
    try:
        return await platform.renew_lease(lease.group, lease.holder, lease.ttl_seconds)
    except RolloutAborted as exc:
        raise _reverted(exc) from None


def _reverted(exc: RolloutAborted) -> RolloutAborted:
    return RolloutAborted(f"{ABORTED_PREFIX}{exc.message}")


@dataclass(frozen=True)
class Reverted:
    """The platform took a run's group back: why, and whether another rollout holds it now."""

    reason: str
    taken_by_another: bool = False


def platform_reverted(platform: Platform, group: str, holder: str) -> Reverted | None:
    """Why ``holder`` no longer owns ``group`` (the platform moved the traffic already), or None."""
    lease = platform.get_lease(group)
    if lease is None:
        return None
    if lease.holder == holder and lease.revoked:
        return Reverted(f"{ABORTED_PREFIX}{lease.reason}")
    if lease.holder != holder:
        return Reverted(f"group {group} is now leased by {lease.holder}", taken_by_another=True)
    return None


def release_lease(platform: Platform, group: str, holder: str) -> str | None:
    """Give ``group``'s lease back; returns why it was not released (held by another, none), else None."""
    try:
        platform.release_lease(group, holder)
    except (NotFound, Conflict) as exc:
        return exc.message
    return None


# -- first release -----------------------------------------------------------------------------


def first_release_reason(platform: Platform, group: str, service: str) -> str | None:
    """Why ``service`` needs no canary (no other member serves traffic while Running), else None."""
    info = describe_group_or_empty(platform, group)
    serving = []
    for member in live_members(info, exclude=service):
        try:
            status = platform.describe(member.service).status
        except NotFound:
            continue
        if status == RUNNING:
            serving.append(member.service)
    if serving:
        return None
    others = [m.service for m in info.members if m.service != service]
    if not others:
        return f"first release into group {group}: no other member, so there is nothing to compare with"
    return (
        f"first release into group {group}: no member serves traffic while Running ({', '.join(others)}), "
        "so there is nothing to protect or compare with"
    )


def release_without_canary(platform: Platform, group: str, service: str, reason: str) -> dict[str, int]:
    """Give ``service`` all traffic at once and say why no canary ran (in the group's events)."""
    info = platform.describe_group(group)
    weights = {m.service: 0 for m in info.members}
    weights[service] = 100
    platform.set_traffic(group, weights)
    platform.add_group_event(group, "info", f"{service} got all traffic without a canary: {reason}")
    return weights
