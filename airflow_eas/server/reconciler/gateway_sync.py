"""The one thread that talks to the gateway, beside the loop.

The loop hands it each tick's desired state and goes on; a reload (which waits for
HAProxy's new worker and for the old ones to stop accepting) never stalls a tick. An
API call that must see its change applied (a weight) hands its state over and waits for
that state, or a later one, to be applied. Between changes it counts the requests in
flight (for draining) and adjusts the log sampling of busy routes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_eas.errors import EasError
from airflow_eas.server.gateway import Gateway, GatewayState
from airflow_eas.server.reconciler.throttle import ErrorThrottle

log = logging.getLogger("airflow_eas.server")


@dataclass(frozen=True)
class Sessions:
    """In-flight requests per (backend, server), counted once the state handed over at ``after`` was applied."""

    after: float = 0.0
    counts: dict[tuple[str, str], int] = field(default_factory=dict)


class GatewaySync:
    def __init__(
        self, gateway: Gateway, *, sampler: Callable[[GatewayState], None], sampling_period: float,
        throttle: ErrorThrottle,
    ) -> None:
        self.gateway = gateway
        self._sampler, self._sampling_period = sampler, sampling_period
        self._throttle = throttle
        self._cond = threading.Condition()
        self._desired: GatewayState | None = None
        self._handed_at = 0.0  # when the desired state was handed over
        self._version = 0  # of the desired state
        self.applied_version = 0
        self._failed: tuple[int, str] | None = None  # the version whose apply failed, and why
        self._count_sessions = False
        self.sessions = Sessions()
        self._next_sampling = 0.0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="eas-gateway", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def hand_over(self, state: GatewayState, *, count_sessions: bool) -> int:
        """Make ``state`` the one to apply next; returns its version (see :meth:`wait_applied`)."""
        with self._cond:
            self._version += 1
            self._desired, self._handed_at = state, time.time()
            self._count_sessions = count_sessions
            self._cond.notify_all()
            return self._version

    def wait_applied(self, version: int, timeout: float) -> None:
        """Until the state of ``version`` (or a later one) serves; raise EasError if applying it failed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.applied_version < version:
                if self._failed is not None and self._failed[0] >= version:
                    raise EasError(f"the gateway did not take the change: {self._failed[1]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EasError(f"the gateway did not take the change within {timeout:.0f} s")
                self._cond.wait(left)

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        done = 0
        while True:
            with self._cond:
                while not self._stopped and self._version == done:
                    self._cond.wait(self._sampling_period)
                    if self._count_sessions or time.monotonic() >= self._next_sampling:
                        break
                if self._stopped:
                    return
                state, version, handed_at = self._desired, self._version, self._handed_at
                count_sessions = self._count_sessions
            if state is None:
                continue
            if version != done or not self.gateway.alive():  # at rest only a liveness look: O(1), not O(routes)
                self._apply(state, version)
            done = version
            if count_sessions:
                self.sessions = Sessions(handed_at, self.gateway.sessions())
            self._sample(state)

    def _apply(self, state: GatewayState, version: int) -> None:
        try:
            if self.gateway.alive():
                self.gateway.apply(state)
            else:
                self.gateway.ensure_running(state)
                self.gateway.restarts += 1
                log.warning("gateway was down; started it again from the store")
        except Exception as exc:  # noqa: BLE001 - reported to the waiting API call; the next state retries
            self._throttle.report("applying the gateway state failed", exc)
            with self._cond:
                self._failed = (version, str(exc))
                self._cond.notify_all()
            return
        with self._cond:
            self.applied_version = max(self.applied_version, version)
            self._cond.notify_all()
        self._throttle.clear()

    def _sample(self, state: GatewayState) -> None:
        if time.monotonic() < self._next_sampling:
            return
        self._next_sampling = time.monotonic() + self._sampling_period
        try:
            self._sampler(state)
        except OSError as exc:  # the master CLI was briefly away (a reload): try again next period
            self._throttle.report("adjusting log sampling failed", exc)
