"""The ``Platform`` interface: the one line between the Airflow provider and any platform.

Operators, sensors and triggers only ever talk to a :class:`Platform`. Its types are
plain JSON-safe dataclasses so they cross XCom and trigger payloads unchanged.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from airflow_eas.spec import ServiceSpec


def _plain(value: Any) -> Any:
    """A JSON-safe copy: types of this module as dicts, containers copied, scalars as they are."""
    if isinstance(value, _Json):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Service statuses, as EAS names them.
CREATING = "Creating"
RUNNING = "Running"
UPDATING = "Updating"
SCALING = "Scaling"
STOPPING = "Stopping"
STOPPED = "Stopped"
FAILED = "Failed"
DELETING = "Deleting"
WAITING = "Waiting"  # served before, but no instance serves right now (all restarting)


class _Json:
    def to_dict(self) -> dict[str, Any]:
        # by hand rather than dataclasses.asdict: its deepcopy made a 500-service list cost seconds
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class InstanceInfo(_Json):
    id: str
    address: str
    status: str
    version: int = 0
    restarts: int = 0
    started_at: float | None = None


@dataclass
class Event(_Json):
    time: float
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass
class ServiceInfo(_Json):
    name: str
    status: str
    endpoint: str
    token: str
    group: str | None
    instances: int
    running_instances: int
    version: int
    instance_list: list[InstanceInfo] = field(default_factory=list)
    reason: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    link: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceInfo:
        info = super().from_dict(data)
        info.instance_list = [InstanceInfo.from_dict(i) for i in data.get("instance_list", [])]
        info.events = [Event.from_dict(e) for e in data.get("events", [])]
        return info

    @property
    def ready(self) -> bool:
        """All wanted instances of the current version serve."""
        current = [i for i in self.instance_list if i.version == self.version and i.status == RUNNING]
        return self.status == RUNNING and len(current) >= self.instances


@dataclass
class GroupMember(_Json):
    service: str
    weight: int


@dataclass
class GroupInfo(_Json):
    name: str
    endpoint: str
    token: str
    members: list[GroupMember] = field(default_factory=list)
    # Whether the gateway took the current weights (a cluster's route status); None where it cannot be known.
    accepted: bool | None = None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupInfo:
        info = super().from_dict(data)
        info.members = [GroupMember.from_dict(m) for m in data.get("members", [])]
        info.events = [Event.from_dict(e) for e in data.get("events", [])]
        return info

    def weight_of(self, service: str) -> int:
        return next((m.weight for m in self.members if m.service == service), 0)


@dataclass
class Metrics(_Json):
    """Data-plane metrics of one service over a sliding window."""

    service: str
    window_seconds: int
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rps: float = 0.0
    # requests per status code ("200", "429", "450", "503", ...); which of them are errors: server/metrics.py
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["error_rate"] = self.error_rate
        return out


# The windows a platform keeps points for (name -> seconds), and the columns of its points.
SERIES_WINDOWS = {"15m": 900, "1h": 3600, "24h": 86400}
TRAFFIC_COLUMNS = ("t", "requests", "errors", "rps", "error_rate", "p50_ms", "p95_ms", "p99_ms")
USAGE_COLUMNS = ("t", "cpu_percent", "memory_mb")


def _no_points() -> dict[str, list]:
    return {c: [] for c in TRAFFIC_COLUMNS}


@dataclass
class Series(_Json):
    """Points of one service (or group) over a window, as columns a chart draws.

    ``points`` holds :data:`TRAFFIC_COLUMNS`: ``t`` is the end of each ``step_seconds``
    period that saw traffic (Unix seconds, ascending), ``error_rate`` is None without
    requests, the percentiles are None without data. ``instances`` holds, per instance id,
    :data:`USAGE_COLUMNS` (mean CPU percent, highest memory in MB per step).
    """

    name: str
    window_seconds: int
    step_seconds: int
    points: dict[str, list] = field(default_factory=_no_points)
    instances: dict[str, dict[str, list]] = field(default_factory=dict)


@dataclass
class GuardSettings(_Json):
    """The platform's guard of a leased rollout: revert to the stable member on a clear breach.

    A candidate (a member other than the stable one, with traffic) breaches when its error
    rate over the last ``window_seconds`` exceeds ``max_error_rate`` with at least
    ``min_requests`` requests in that window.
    """

    window_seconds: int = 10
    max_error_rate: float = 0.01
    min_requests: int = 20

    def check(self) -> GuardSettings:
        from airflow_eas.errors import InvalidSpec

        if not isinstance(self.window_seconds, int) or not 1 <= self.window_seconds <= 900:
            raise InvalidSpec(f"guard.window_seconds: {self.window_seconds!r} is not a whole number from 1 to 900")
        if not isinstance(self.max_error_rate, (int, float)) or not 0 <= self.max_error_rate <= 1:
            raise InvalidSpec(f"guard.max_error_rate: {self.max_error_rate!r} is not a number from 0 to 1")
        if not isinstance(self.min_requests, int) or self.min_requests < 1:
            raise InvalidSpec(f"guard.min_requests: {self.min_requests!r} is not a whole number of at least 1")
        return self


# Lease states: held by a rollout; revoked by the platform (it reverted the group's traffic);
# lapsed (no heartbeat, nothing was split: the group is free, its holder may renew it).
LEASE_HELD = "held"
LEASE_REVOKED = "revoked"
LEASE_LAPSED = "lapsed"


@dataclass
class Lease(_Json):
    """Exclusive right to change one group, held by one rollout at a time.

    It is also a dead-man's switch: ``stable`` is the member that held all traffic when the
    lease was taken; when the lease lapses while another member has traffic (the rollout is
    gone), or the ``guard`` sees that member fail, the platform gives all traffic back to
    ``stable`` and marks the lease ``revoked`` with the ``reason``.
    """

    group: str
    holder: str
    expires_at: float
    stable: str | None = None
    guard: GuardSettings | None = None
    ttl_seconds: float | None = None
    state: str = LEASE_HELD
    reason: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lease:
        lease = super().from_dict(data)
        if isinstance(data.get("guard"), dict):
            lease.guard = GuardSettings.from_dict(data["guard"])
        return lease

    @property
    def revoked(self) -> bool:
        return self.state == LEASE_REVOKED


class Platform(ABC):
    """What a model-serving platform offers the provider (EAS's service API)."""

    @abstractmethod
    def create(self, spec: ServiceSpec) -> ServiceInfo: ...

    @abstractmethod
    def modify(self, spec: ServiceSpec) -> ServiceInfo:
        """Replace a service's spec; a rolling update where the platform supports it."""

    def deploy(self, spec: ServiceSpec) -> ServiceInfo:
        """Create the service, or update it when it exists (the one create-or-update path).

        Retry-safe: a name never makes a second service. A service that was scaled to zero or
        stopped is started again when the new spec wants instances.
        """
        from airflow_eas.errors import NotFound

        try:
            current = self.describe(spec.name)
        except NotFound:
            return self.create(spec)
        info = self.modify(spec)
        if current.instances == 0 and spec.metadata.instance > 0:
            info = self.start(spec.name)
        return info

    @abstractmethod
    def describe(self, name: str) -> ServiceInfo: ...

    @abstractmethod
    def list(self) -> list[ServiceInfo]: ...

    @abstractmethod
    def scale(self, name: str, instances: int) -> ServiceInfo: ...

    @abstractmethod
    def start(self, name: str) -> ServiceInfo: ...

    @abstractmethod
    def stop(self, name: str) -> ServiceInfo: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def describe_group(self, group: str) -> GroupInfo: ...

    @abstractmethod
    def list_groups(self) -> list[GroupInfo]: ...

    @abstractmethod
    def set_traffic(self, group: str, weights: dict[str, int]) -> GroupInfo:
        """Set member weights (0-100 each); members not named keep theirs."""

    @abstractmethod
    def metrics(self, name: str, window_seconds: int = 60) -> Metrics: ...

    @abstractmethod
    def series(self, name: str, window: str = "15m") -> Series:
        """The points of a service or group over the last ``window`` (one of :data:`SERIES_WINDOWS`)."""

    @abstractmethod
    def logs(self, name: str, lines: int = 100) -> str: ...

    @abstractmethod
    def gateway_url(self) -> str:
        """The data plane's base URL (``<gateway>/api/predict/<name>`` serves a service or group)."""

    @abstractmethod
    def invoke(self, name: str, data: bytes | str, *, timeout: float = 30.0) -> tuple[int, bytes]:
        """Call a service or group through the gateway; returns (status, body)."""

    @abstractmethod
    def acquire_lease(
        self,
        group: str,
        holder: str,
        ttl_seconds: int,
        *,
        stable: str | None = None,
        guard: GuardSettings | None = None,
    ) -> Lease:
        """Take (or take again, for the same holder) the group's lease; Conflict when another holds it.

        ``stable`` is the member all traffic goes back to when the lease lapses with traffic
        split, or when ``guard`` (None: no guard) sees a candidate breach. Every platform
        records both on the lease; whether something acts on them is the platform's (see
        docs/kubernetes.md for a cluster).
        """

    @abstractmethod
    def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        """The heartbeat: extend the holder's lease (and name a new ``stable`` member, e.g. on promote).

        RolloutAborted when the platform revoked the lease (it reverted the group's traffic);
        Conflict when another holder has the group.
        """

    @abstractmethod
    def get_lease(self, group: str) -> Lease | None:
        """The group's lease (held, lapsed, or revoked with its reason), None when the group is free."""

    @abstractmethod
    def release_lease(self, group: str, holder: str) -> None: ...

    @abstractmethod
    def add_group_event(self, group: str, level: str, message: str) -> None:
        """Record an event (level info, warning or error) on a group; :meth:`describe_group` shows it."""

    @abstractmethod
    def asset(self, name: str) -> dict[str, Any]:
        """A registered asset (``asset:NAME`` in a spec): ``name``, ``type`` (image or data), ``uri`` with any
        credentials in it redacted, ``version``, ``used_by``. NotFound when there is none."""
