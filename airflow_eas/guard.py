"""The platform's own safety net for rollouts: a dead-man's switch and a data-plane guard.

A rollout takes its group's lease naming the *stable* member (the one holding all traffic)
and renews it from every task. Once a second this watcher looks at every held lease:

- **dead-man's switch**: the lease lapsed (the run was killed, Airflow is down) while a
  member other than the stable one has traffic: all traffic goes back to the stable member;
- **guard**: a candidate with traffic fails clearly (error rate over the guard's window
  above its limit, with enough requests): the same revert, at once, without waiting for
  the rollout's own analysis.

Either way the lease is marked revoked with the reason (the group is free again; its holder
learns why at its next heartbeat) and the group's events say what happened. A lapsed lease
with nothing split only frees the group (its holder may renew it, keeping its stable member).

These are the decisions of every platform, written once against :class:`LeaseWarden`:
``eas server`` runs them on a thread beside its reconciler (``server/guard.py``), ``eas guard``
runs them in a cluster against :class:`KubernetesPlatform` (one leader at a time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from airflow_eas.errors import EasError
from airflow_eas.platform.base import Lease, LeaseWarden

log = logging.getLogger("airflow_eas.guard")

# Whether this process may act now (leader election where several guards run); None: always.
Leader = Callable[[], bool]


class RolloutGuard:
    """Watches leased groups every ``interval`` seconds; :meth:`check` is one pass.

    :param warden: the platform's leases, members, metrics and traffic
    :param interval: seconds between passes
    :param leader: asked before each pass; a pass runs only while it answers True
    :param min_window_seconds: read metrics over at least this many seconds (a cluster's
        Prometheus scraped every 15-30 s has no data over a 10 s window)
    """

    def __init__(self, warden: LeaseWarden, *, interval: float = 1.0, leader: Leader | None = None,
                 min_window_seconds: int = 0) -> None:
        self.warden = warden
        self.interval = interval
        self.leader = leader
        self.min_window_seconds = min_window_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self.run, name="eas-rollout-guard", daemon=True)
        self._last_error: dict[str, str] = {}

    # -- driving ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run on a daemon thread (``eas server``)."""
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def run(self) -> None:
        """Pass after pass until :meth:`stop` (``eas guard`` runs this in the foreground)."""
        while not self._stopped.wait(self.interval):
            self._safely("pass", self.run_once)

    def run_once(self) -> None:
        """One pass as the loop runs it: only while this process leads."""
        if self._leads():
            self.check()

    def _leads(self) -> bool:
        return self.leader is None or self.leader()

    def _safely(self, what: str, action: Callable[[], None]) -> None:
        """Run ``action``; the watcher outlives any one failure, logged once until it changes."""
        try:
            action()
            self._last_error.pop(what, None)
        except Exception as exc:  # e.g. a member deleted mid-pass, an API server restarting: logged, not fatal
            if self._last_error.get(what) != str(exc):
                log.warning("rollout guard: %s failed: %s", what, exc, exc_info=not isinstance(exc, EasError))
            self._last_error[what] = str(exc)

    # -- deciding --------------------------------------------------------------------------

    def check(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for lease in self.warden.watched_leases():
            # One group's trouble (Prometheus down, a member gone) must not leave the others unwatched.
            self._safely(f"group {lease.group}", lambda lease=lease: self._check_lease(lease, now))

    def _check_lease(self, lease: Lease, now: float) -> None:
        members = self.warden.members(lease.group)
        stable = lease.stable if lease.stable in members else None
        candidates = [m for m, w in members.items() if w > 0 and m != stable]
        if lease.expires_at <= now:
            if stable and candidates:
                split = ", ".join(f"{m}={w}" for m, w in sorted(members.items()))
                self._revert(lease, members, f"the lease of {lease.holder} lapsed (no heartbeat for "
                                             f"{_seconds(lease.ttl_seconds)}) while traffic was split ({split})")
            elif self._leads():
                why = f"the lease of {lease.holder} lapsed; nothing was split, nothing to revert"
                self.warden.lapse_lease(lease, why)
                self.warden.record(lease.group, "info", why)
            return
        if lease.guard is None or not stable:
            return
        guard = lease.guard
        window = max(guard.window_seconds, self.min_window_seconds)
        for candidate in candidates:
            m = self.warden.error_window(candidate, window)
            # no data (or too little) is never a breach: only a clear failure reverts
            if m.requests >= guard.min_requests and m.errors / m.requests > guard.max_error_rate:
                self._revert(
                    lease, members,
                    f"the guard saw {candidate} fail: error rate {m.errors}/{m.requests} = "
                    f"{m.errors / m.requests:.1%} over the last {window} s exceeds {guard.max_error_rate:.1%}",
                )
                return

    def _revert(self, lease: Lease, members: dict[str, int], why: str) -> None:
        # Asked again right before acting: a leader that stalled past its lead (a standby took over
        # meanwhile) must not act on what it read before the stall.
        if not self._leads():
            return
        # The safe state first, then the bookkeeping (a run that renews in between still loses the group).
        weights = {m: 0 for m in members}
        weights[lease.stable] = 100  # type: ignore[index]
        self.warden.revert_traffic(lease.group, weights)
        reason = f"{why}; all traffic went back to {lease.stable}"
        self.warden.revoke_lease(lease, reason)
        self.warden.record(lease.group, "warning", reason)
        log.warning("group %s: %s", lease.group, reason)


def _seconds(value: float | None) -> str:
    return f"{value:g} s" if value else "its TTL"
