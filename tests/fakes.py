"""An in-memory :class:`Platform`: real state (services, groups, weights, leases), no processes.

Unit tests of :mod:`airflow_eas.rollout` and of the operators run against it. Services are
ready as soon as they are written (set ``ready=False`` on one to keep it starting); metrics,
time series and invoke answers are whatever a test sets. ``calls`` records every write, in
order, so a test can assert what a step did (``("stop", "g_blue")``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_eas.errors import Conflict, InvalidSpec, NotFound, RolloutAborted
from airflow_eas.platform.base import (
    LEASE_HELD,
    LEASE_REVOKED,
    RUNNING,
    SERIES_WINDOWS,
    STOPPED,
    Event,
    GroupInfo,
    GroupMember,
    GuardSettings,
    InstanceInfo,
    Lease,
    Metrics,
    Platform,
    Series,
    ServiceInfo,
)
from airflow_eas.spec import ServiceSpec

Answer = tuple[int, bytes]


@dataclass
class FakeService:
    spec: ServiceSpec
    instances: int
    version: int = 1
    status: str = RUNNING
    ready: bool = True  # False: instances still starting (describe().ready stays False)

    def info(self) -> ServiceInfo:
        serving = self.instances if self.ready and self.status == RUNNING else 0
        return ServiceInfo(
            name=self.spec.name,
            status=self.status,
            endpoint=f"http://fake-gateway/api/predict/{self.spec.name}",
            token="token",
            group=self.spec.group,
            instances=self.instances,
            running_instances=serving,
            version=self.version,
            instance_list=[
                InstanceInfo(id=f"{self.spec.name}-{i}", address="", status=RUNNING, version=self.version)
                for i in range(serving)
            ],
            spec=self.spec.to_json(),
        )


@dataclass
class FakePlatform(Platform):
    services: dict[str, FakeService] = field(default_factory=dict)
    weights: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> member -> weight
    leases: dict[str, Lease] = field(default_factory=dict)
    metric_values: dict[str, Metrics] = field(default_factory=dict)
    series_values: dict[str, Series] = field(default_factory=dict)  # name -> its points, in every window
    answers: dict[str, Callable[[bytes], Answer]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    invoked: list[tuple[str, bytes]] = field(default_factory=list)
    group_events: dict[str, list[Event]] = field(default_factory=dict)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"type": ..., "uri": ...}

    # -- test set-up -------------------------------------------------------------------------

    def add_member(self, name: str, group: str, *, weight: int = 0, instances: int = 1, **state: Any) -> None:
        """A deployed group member (not recorded in ``calls``)."""
        spec = ServiceSpec.model_validate(
            {
                "name": name,
                "processor": "sklearn",
                "model_path": "file:///m",
                "metadata": {"instance": instances, "group": group},
            }
        )
        self.services[name] = FakeService(spec, instances, **state)
        self.weights.setdefault(group, {})[name] = weight

    def revoke(self, group: str, reason: str) -> None:
        """What the platform's guard or dead-man's switch does: all traffic to the stable member, lease revoked."""
        lease = self.leases[group]
        weights = {m: 0 for m in self.weights[group]}
        if lease.stable:
            weights[lease.stable] = 100
        self.weights[group].update(weights)
        lease.state, lease.reason = LEASE_REVOKED, reason

    def writes(self, *methods: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] in methods]

    # -- services ----------------------------------------------------------------------------

    def _get(self, name: str) -> FakeService:
        try:
            return self.services[name]
        except KeyError:
            raise NotFound(f"service {name} not found") from None

    def create(self, spec: ServiceSpec) -> ServiceInfo:
        self.calls.append(("create", spec.name))
        if spec.name in self.services:
            raise Conflict(f"service {spec.name} exists")
        self.services[spec.name] = FakeService(spec, spec.metadata.instance)
        if spec.group:
            self.weights.setdefault(spec.group, {}).setdefault(spec.name, 0)
        return self.services[spec.name].info()

    def modify(self, spec: ServiceSpec) -> ServiceInfo:
        self.calls.append(("modify", spec.name))
        service = self._get(spec.name)
        service.spec = spec
        service.version += 1
        if service.status == RUNNING:  # a stopped service stays stopped until started
            service.instances = spec.metadata.instance
        return service.info()

    def describe(self, name: str) -> ServiceInfo:
        return self._get(name).info()

    def list(self) -> list[ServiceInfo]:
        return [s.info() for s in self.services.values()]

    def scale(self, name: str, instances: int) -> ServiceInfo:
        self.calls.append(("scale", name, instances))
        service = self._get(name)
        service.instances = instances
        return service.info()

    def start(self, name: str) -> ServiceInfo:
        self.calls.append(("start", name))
        service = self._get(name)
        service.status, service.instances = RUNNING, max(1, service.spec.metadata.instance)
        return service.info()

    def stop(self, name: str) -> ServiceInfo:
        self.calls.append(("stop", name))
        service = self._get(name)
        service.status, service.instances = STOPPED, 0
        return service.info()

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        service = self._get(name)
        del self.services[name]
        members = self.weights.get(service.spec.group or "", {})
        members.pop(name, None)

    # -- groups ------------------------------------------------------------------------------

    def describe_group(self, group: str) -> GroupInfo:
        if not self.weights.get(group):
            raise NotFound(f"group {group} not found")
        members = [GroupMember(name, weight) for name, weight in sorted(self.weights[group].items())]
        events = list(self.group_events.get(group, []))
        return GroupInfo(group, f"http://fake-gateway/api/predict/{group}", "token", members, events=events)

    def list_groups(self) -> list[GroupInfo]:
        return [self.describe_group(g) for g in sorted(self.weights) if self.weights[g]]

    def set_traffic(self, group: str, weights: dict[str, int]) -> GroupInfo:
        self.calls.append(("set_traffic", group, dict(weights)))
        members = self.weights.get(group) or {}
        for name, weight in weights.items():
            if name not in members:
                raise NotFound(f"{name} is not a member of group {group}")
            if not 0 <= weight <= 100:
                raise InvalidSpec(f"weight {weight} of {name}: must be 0-100")
        members.update(weights)
        return self.describe_group(group)

    # -- data plane --------------------------------------------------------------------------

    def metrics(self, name: str, window_seconds: int = 60) -> Metrics:
        self._get(name)
        return self.metric_values.get(name) or Metrics(name, window_seconds, 0, 0, None, None, None)

    def logs(self, name: str, lines: int = 100) -> str:
        return f"{self._get(name).spec.name}: no logs in the fake\n"

    def series(self, name: str, window: str = "15m") -> Series:
        if window not in SERIES_WINDOWS:
            raise InvalidSpec(f"window: {window!r} is not one of {', '.join(SERIES_WINDOWS)}")
        if name not in self.weights:
            self._get(name)
        return self.series_values.get(name) or Series(name, SERIES_WINDOWS[window], 10)

    def gateway_url(self) -> str:
        return "http://fake-gateway"

    def invoke(self, name: str, data: bytes | str, *, timeout: float = 30.0) -> Answer:
        body = data.encode() if isinstance(data, str) else data
        self.invoked.append((name, body))
        answer = self.answers.get(name)
        return answer(body) if answer else (200, b'{"ok": true}')

    # -- leases ------------------------------------------------------------------------------

    def acquire_lease(
        self,
        group: str,
        holder: str,
        ttl_seconds: int,
        *,
        stable: str | None = None,
        guard: GuardSettings | None = None,
    ) -> Lease:
        self.calls.append(("acquire_lease", group, holder, stable))
        current = self.leases.get(group)
        if current and current.holder == holder and current.revoked:
            raise RolloutAborted(current.reason)
        if current and current.holder != holder and current.state == LEASE_HELD and current.expires_at > time.time():
            raise Conflict(f"group {group} is leased by {current.holder}")
        self.leases[group] = Lease(group, holder, time.time() + ttl_seconds, stable, guard, ttl_seconds)
        return self.leases[group]

    def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        self.calls.append(("renew_lease", group, holder, stable))
        current = self.leases.get(group)
        if current is None:
            return self.acquire_lease(group, holder, ttl_seconds, stable=stable)
        if current.holder != holder:
            raise Conflict(f"group {group} is leased by {current.holder}, not {holder}")
        if current.revoked:
            raise RolloutAborted(current.reason)
        current.expires_at = time.time() + ttl_seconds
        current.stable = stable or current.stable
        return current

    def get_lease(self, group: str) -> Lease | None:
        return self.leases.get(group)

    def release_lease(self, group: str, holder: str) -> None:
        current = self.leases.get(group)
        if current is None:
            raise NotFound(f"group {group} has no lease")
        if current.holder != holder:
            raise Conflict(f"group {group} is leased by {current.holder}, not {holder}")
        del self.leases[group]

    def add_group_event(self, group: str, level: str, message: str) -> None:
        self.group_events.setdefault(group, []).append(Event(time.time(), level, message))

    def asset(self, name: str) -> dict[str, Any]:
        if name not in self.assets:
            raise NotFound(f"asset {name!r} not found (eas asset list)")
        return self.assets[name]
