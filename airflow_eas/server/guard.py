"""The platform's own safety net for rollouts: a dead-man's switch and a data-plane guard.

A rollout takes its group's lease naming the *stable* member (the one holding all traffic)
and renews it from every task. Once a second, beside the reconciler, this watcher looks
at every held lease:

- **dead-man's switch**: the lease lapsed (the run was killed, Airflow is down) while a
  member other than the stable one has traffic: all traffic goes back to the stable member;
- **guard**: a candidate with traffic fails clearly (error rate over the guard's window
  above its limit, with enough requests): the same revert, at once, without waiting for
  the rollout's own analysis.

Either way the lease is marked revoked with the reason (the group is free again; its holder
learns why at its next heartbeat) and the group's events say what happened. A lapsed lease
with nothing split only frees the group (its holder may renew it, keeping its stable member).
Weights change through the API's own ``set_traffic``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_eas.platform.base import Lease
from airflow_eas.server.metrics import Window
from airflow_eas.server.store import Store

log = logging.getLogger("airflow_eas.server.guard")

SetTraffic = Callable[[str, dict[str, int]], Any]
ReadWindow = Callable[[str, int], Window]


class RolloutGuard:
    """Watches leased groups once a second (a daemon thread; :meth:`check` is one pass).

    :param store: the control plane's store (leases, members, events)
    :param window: the data-plane metrics of a service over the last N seconds
    :param set_traffic: the API's weight change (so the gateway follows at once)
    :param interval: seconds between passes
    """

    def __init__(self, store: Store, window: ReadWindow, set_traffic: SetTraffic, *, interval: float = 1.0) -> None:
        self.store = store
        self.window = window
        self.set_traffic = set_traffic
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eas-rollout-guard", daemon=True)
        self._last_error = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.check()
                self._last_error = ""
            except Exception as exc:  # the watcher must outlive any one bad pass (e.g. a member just deleted)
                if str(exc) != self._last_error:
                    log.exception("rollout guard pass failed")
                self._last_error = str(exc)

    def check(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for lease in self.store.leases():
            self._check_lease(lease, now)

    def _check_lease(self, lease: Lease, now: float) -> None:
        members = self.store.members(lease.group)
        stable = lease.stable if lease.stable in members else None
        candidates = [m for m, w in members.items() if w > 0 and m != stable]
        if lease.expires_at <= now:
            if stable and candidates:
                split = ", ".join(f"{m}={w}" for m, w in sorted(members.items()))
                self._revert(lease, members, f"the lease of {lease.holder} lapsed (no heartbeat for "
                                             f"{_seconds(lease.ttl_seconds)}) while traffic was split ({split})")
            else:
                why = f"the lease of {lease.holder} lapsed; nothing was split, nothing to revert"
                self.store.lapse_lease(lease.group, lease.holder, why)
                self.store.add_event(lease.group, "info", why)
            return
        if lease.guard is None or not stable:
            return
        guard = lease.guard
        for candidate in candidates:
            w = self.window(candidate, guard.window_seconds)
            if w.requests >= guard.min_requests and w.errors / w.requests > guard.max_error_rate:
                self._revert(
                    lease, members,
                    f"the guard saw {candidate} fail: error rate {w.errors}/{w.requests} = "
                    f"{w.errors / w.requests:.1%} over the last {guard.window_seconds} s exceeds "
                    f"{guard.max_error_rate:.1%}",
                )
                return

    def _revert(self, lease: Lease, members: dict[str, int], why: str) -> None:
        weights = {m: 0 for m in members}
        weights[lease.stable] = 100  # type: ignore[index]
        self.set_traffic(lease.group, weights)
        reason = f"{why}; all traffic went back to {lease.stable}"
        self.store.revoke_lease(lease.group, lease.holder, reason)
        self.store.add_event(lease.group, "warning", reason)
        log.warning("group %s: %s", lease.group, reason)


def _seconds(value: float | None) -> str:
    return f"{value:g} s" if value else "its TTL"
