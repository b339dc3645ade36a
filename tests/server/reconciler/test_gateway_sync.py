"""The gateway worker: a slow reload never holds up the loop, and an API call waits for its change."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_eas.errors import EasError
from airflow_eas.server.gateway import GatewayState
from airflow_eas.server.reconciler.gateway_sync import GatewaySync
from airflow_eas.server.reconciler.throttle import ErrorThrottle


class SlowGateway:
    """Applies a state only once ``release`` is set, as a reload waits for HAProxy's workers."""

    restarts = 0

    def __init__(self) -> None:
        self.release = threading.Event()
        self.applied: list[GatewayState] = []
        self.fail: str | None = None

    def alive(self) -> bool:
        return True

    def apply(self, state: GatewayState) -> None:
        self.release.wait(5)
        if self.fail:
            raise EasError(self.fail)
        self.applied.append(state)

    def sessions(self) -> dict[tuple[str, str], int]:
        return {("s_a", "a-1"): 3}


@pytest.fixture
def worker() -> Iterator[tuple[GatewaySync, SlowGateway]]:
    gateway = SlowGateway()
    sync = GatewaySync(
        gateway, sampler=lambda state: None, sampling_period=0.05,  # type: ignore[arg-type]
        throttle=ErrorThrottle(logging.getLogger("test.gateway"), 60),
    )
    sync.start()
    try:
        yield sync, gateway
    finally:
        gateway.release.set()
        sync.stop(5)


def test_handing_over_does_not_wait_for_the_gateway(worker: tuple[GatewaySync, SlowGateway]) -> None:
    sync, gateway = worker
    started = time.monotonic()
    for _ in range(20):  # twenty ticks while one reload is in progress
        sync.hand_over(GatewayState(), count_sessions=False)
    assert time.monotonic() - started < 0.5
    assert gateway.applied == []


def test_an_api_call_returns_once_its_state_serves(worker: tuple[GatewaySync, SlowGateway]) -> None:
    sync, gateway = worker
    mine = GatewayState(routes={"grp": ("g_grp", "t")})
    version = sync.hand_over(mine, count_sessions=True)
    with pytest.raises(EasError, match="within 0 s"):
        sync.wait_applied(version, timeout=0.2)
    gateway.release.set()
    sync.wait_applied(version, timeout=5)
    assert gateway.applied[-1] is mine
    deadline = time.monotonic() + 5
    while sync.sessions.after == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sync.sessions.counts == {("s_a", "a-1"): 3}, "draining needs the in-flight counts"


def test_a_failed_change_is_reported_to_the_waiting_call(worker: tuple[GatewaySync, SlowGateway]) -> None:
    sync, gateway = worker
    gateway.fail = "generated gateway config is invalid: bad server"
    gateway.release.set()
    version = sync.hand_over(GatewayState(), count_sessions=False)
    with pytest.raises(EasError, match="did not take the change: generated gateway config is invalid"):
        sync.wait_applied(version, timeout=5)
