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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupInfo:
        info = super().from_dict(data)
        info.members = [GroupMember.from_dict(m) for m in data.get("members", [])]
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

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["error_rate"] = self.error_rate
        return out


@dataclass
class Lease(_Json):
    """Exclusive right to change one group, held by one rollout at a time."""

    group: str
    holder: str
    expires_at: float


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
    def logs(self, name: str, lines: int = 100) -> str: ...

    @abstractmethod
    def gateway_url(self) -> str:
        """The data plane's base URL (``<gateway>/api/predict/<name>`` serves a service or group)."""

    @abstractmethod
    def invoke(self, name: str, data: bytes | str, *, timeout: float = 30.0) -> tuple[int, bytes]:
        """Call a service or group through the gateway; returns (status, body)."""

    @abstractmethod
    def acquire_lease(self, group: str, holder: str, ttl_seconds: int) -> Lease:
        """Take (or renew, for the same holder) the group's lease; Conflict when another holds it."""

    @abstractmethod
    def release_lease(self, group: str, holder: str) -> None: ...
