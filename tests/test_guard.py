"""The rollout guard's decisions (airflow_eas/guard.py), every path, on an in-memory platform.

The same decisions run on real parts in tests/server/test_rollout_guard.py (eas server) and
tests/platform/kubernetes/test_guard.py (eas guard on the emulated cluster).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from airflow_eas.errors import PlatformUnavailable
from airflow_eas.guard import RolloutGuard
from airflow_eas.platform.base import (
    LEASE_HELD,
    LEASE_LAPSED,
    LEASE_REVOKED,
    GuardSettings,
    Lease,
    LeaseWarden,
    Metrics,
)

NOW = time.time()  # check(NOW) takes it; run_once reads the clock, so its tests pass now=time.time()
GUARD = GuardSettings(window_seconds=10, max_error_rate=0.05, min_requests=20)


@dataclass
class MemoryWarden(LeaseWarden):
    leases: dict[str, Lease] = field(default_factory=dict)
    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    traffic: dict[str, tuple[int, int]] = field(default_factory=dict)  # service -> (requests, errors)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    windows: list[tuple[str, int]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  # services whose metrics source is unreachable

    def watched_leases(self) -> list[Lease]:
        return [lease for lease in self.leases.values() if lease.state == LEASE_HELD]

    def members(self, group: str) -> dict[str, int]:
        return dict(self.groups[group])

    def error_window(self, service: str, window_seconds: int) -> Metrics:
        self.windows.append((service, window_seconds))
        if service in self.down:
            raise PlatformUnavailable("Prometheus at http://prometheus:9090 is unreachable")
        requests, errors = self.traffic.get(service, (0, 0))
        return Metrics(service, window_seconds, requests, errors, None, None, None)

    def revert_traffic(self, group: str, weights: dict[str, int]) -> None:
        self.groups[group].update(weights)

    def revoke_lease(self, lease: Lease, reason: str) -> None:
        self.leases[lease.group].state, self.leases[lease.group].reason = LEASE_REVOKED, reason

    def lapse_lease(self, lease: Lease, reason: str) -> None:
        self.leases[lease.group].state, self.leases[lease.group].reason = LEASE_LAPSED, reason

    def record(self, group: str, level: str, message: str) -> None:
        self.events.append((group, level, message))


def lease(group: str, *, expires_in: float, guard: GuardSettings | None = None, now: float = NOW) -> Lease:
    return Lease(group, "dag/run_1", now + expires_in, f"{group}_blue", guard, 30.0)


def split(warden: MemoryWarden, group: str, green: int = 50) -> None:
    warden.groups[group] = {f"{group}_blue": 100 - green, f"{group}_green": green}


def test_a_lapse_with_traffic_split_goes_back_to_the_stable_member() -> None:
    w = MemoryWarden()
    split(w, "fraud")
    w.leases["fraud"] = lease("fraud", expires_in=-1)
    RolloutGuard(w).check(NOW)
    assert w.groups["fraud"] == {"fraud_blue": 100, "fraud_green": 0}
    reason = w.leases["fraud"].reason
    assert w.leases["fraud"].state == LEASE_REVOKED
    assert reason == ("the lease of dag/run_1 lapsed (no heartbeat for 30 s) while traffic was split "
                      "(fraud_blue=50, fraud_green=50); all traffic went back to fraud_blue")
    assert w.events == [("fraud", "warning", reason)]


def test_a_lapse_with_nothing_split_only_frees_the_group() -> None:
    w = MemoryWarden()
    split(w, "fraud", green=0)
    w.leases["fraud"] = lease("fraud", expires_in=-1)
    RolloutGuard(w).check(NOW)
    assert w.groups["fraud"] == {"fraud_blue": 100, "fraud_green": 0}
    assert w.leases["fraud"].state == LEASE_LAPSED
    assert w.events == [("fraud", "info", "the lease of dag/run_1 lapsed; nothing was split, nothing to revert")]


def test_the_guard_reverts_a_clear_breach_only() -> None:
    w = MemoryWarden()
    for group, (requests, errors) in {"bad": (40, 20), "few": (19, 19), "edge": (100, 5), "good": (400, 1)}.items():
        split(w, group)
        w.leases[group] = lease(group, expires_in=60, guard=GUARD)
        w.traffic[f"{group}_green"] = (requests, errors)
    RolloutGuard(w).check(NOW)
    assert w.groups["bad"] == {"bad_blue": 100, "bad_green": 0}
    assert w.leases["bad"].reason == ("the guard saw bad_green fail: error rate 20/40 = 50.0% over the last 10 s "
                                      "exceeds 5.0%; all traffic went back to bad_blue")
    for group in ("few", "edge", "good"):  # under min_requests; at the limit (not above it); healthy
        assert w.groups[group][f"{group}_green"] == 50, group
        assert w.leases[group].state == LEASE_HELD, group
    assert ("bad_green", 10) in w.windows


def test_an_unguarded_lease_or_a_first_release_is_not_read() -> None:
    w = MemoryWarden()
    split(w, "plain")
    w.leases["plain"] = lease("plain", expires_in=60)
    w.groups["first"] = {"first_green": 100}
    w.leases["first"] = Lease("first", "dag/run_1", NOW + 60, None, GUARD, 30.0)
    RolloutGuard(w).check(NOW)
    assert w.windows == []
    assert w.events == []


def test_an_unreachable_metrics_source_is_no_breach_and_other_groups_are_still_watched() -> None:
    w = MemoryWarden(down={"dark_green"})
    split(w, "dark")
    w.leases["dark"] = lease("dark", expires_in=60, guard=GUARD, now=time.time())
    split(w, "bad")
    w.leases["bad"] = lease("bad", expires_in=60, guard=GUARD, now=time.time())
    w.traffic["bad_green"] = (40, 20)
    guard = RolloutGuard(w)
    guard.run_once()
    assert w.groups["dark"]["dark_green"] == 50
    assert w.leases["dark"].state == LEASE_HELD
    assert w.leases["bad"].state == LEASE_REVOKED


def test_only_the_leader_acts_and_asks_again_before_acting() -> None:
    w = MemoryWarden()
    split(w, "fraud")
    w.leases["fraud"] = lease("fraud", expires_in=-1, now=time.time())
    RolloutGuard(w, leader=lambda: False).run_once()
    assert w.leases["fraud"].state == LEASE_HELD
    answers = iter([True, False])  # it led when the pass began, lost the lead before acting
    RolloutGuard(w, leader=lambda: next(answers)).run_once()
    assert w.groups["fraud"] == {"fraud_blue": 50, "fraud_green": 50}
    assert w.leases["fraud"].state == LEASE_HELD
    assert w.events == []


def test_a_cluster_reads_over_at_least_its_min_window() -> None:
    w = MemoryWarden()
    split(w, "fraud")
    w.leases["fraud"] = lease("fraud", expires_in=60, guard=GUARD)
    RolloutGuard(w, min_window_seconds=30).check(NOW)
    assert w.windows == [("fraud_green", 30)]
