"""The rollout guard of ``eas server``: the shared decisions (``airflow_eas/guard.py``) on its store.

The server runs :class:`~airflow_eas.guard.RolloutGuard` on a thread beside its reconciler,
driven through :class:`StoreWarden`: leases and events from the store, windows from the
gateway's metrics collector, weights through the API's own ``set_traffic`` (so the gateway
follows at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_eas.guard import RolloutGuard
from airflow_eas.platform.base import Lease, LeaseWarden, Metrics
from airflow_eas.server.metrics import Window
from airflow_eas.server.store import Store

SetTraffic = Callable[[str, dict[str, int]], Any]
ReadWindow = Callable[[str, int], Window]


class StoreWarden(LeaseWarden):
    """The single host's leases, members, metrics and traffic.

    :param store: the control plane's store (leases, members, events)
    :param window: the data-plane metrics of a service over the last N seconds
    :param set_traffic: the API's weight change
    """

    def __init__(self, store: Store, window: ReadWindow, set_traffic: SetTraffic) -> None:
        self.store = store
        self.window = window
        self.set_traffic = set_traffic

    def watched_leases(self) -> list[Lease]:
        return self.store.leases()

    def members(self, group: str) -> dict[str, int]:
        return self.store.members(group)

    def error_window(self, service: str, window_seconds: int) -> Metrics:
        w = self.window(service, window_seconds)
        return Metrics(service, w.seconds, w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms, w.rps, w.statuses)

    def revert_traffic(self, group: str, weights: dict[str, int]) -> None:
        self.set_traffic(group, weights)

    def revoke_lease(self, lease: Lease, reason: str) -> None:
        self.store.revoke_lease(lease.group, lease.holder, reason)

    def lapse_lease(self, lease: Lease, reason: str) -> None:
        self.store.lapse_lease(lease.group, lease.holder, reason)

    def record(self, group: str, level: str, message: str) -> None:
        self.store.add_event(group, level, message)


def server_guard(store: Store, window: ReadWindow, set_traffic: SetTraffic, *, interval: float = 1.0) -> RolloutGuard:
    """The guard ``eas server`` starts: once a second over its own store."""
    return RolloutGuard(StoreWarden(store, window, set_traffic), interval=interval)
