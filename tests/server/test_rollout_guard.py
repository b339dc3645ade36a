"""The platform protects a rollout by itself: the lease's dead-man's switch and the data-plane guard.

Real `eas server` + HAProxy + echo processes; the "rollout" is a test holding the lease.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_eas.demo import TrafficDriver
from airflow_eas.errors import Conflict, InvalidSpec, RolloutAborted
from airflow_eas.platform.base import GuardSettings
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running, wait_until
from tests.server.test_cli import eas


def two_members(client: Any, group: str, **green_env: str) -> tuple[str, str]:
    """``<group>_blue`` with all traffic, ``<group>_green`` deployed without any."""
    blue, green = f"{group}_blue", f"{group}_green"
    client.create(parse_spec(echo_spec(blue, group=group, APP_VERSION="1")))
    client.create(parse_spec(echo_spec(green, group=group, APP_VERSION="2", **green_env)))
    wait_running(client, blue)
    wait_running(client, green)
    client.set_traffic(group, {blue: 100, green: 0})
    return blue, green


def weights(client: Any, group: str) -> dict[str, int]:
    return {m.service: m.weight for m in client.describe_group(group).members}


@pytest.fixture
def traffic(eas_server) -> Iterator[Any]:
    drivers: list[TrafficDriver] = []

    def start(group: str, rps: float = 40) -> TrafficDriver:
        token = eas_server.client.describe_group(group).token
        drivers.append(TrafficDriver(f"{eas_server.gateway}/api/predict/{group}", token, b"{}", rps=rps).start())
        return drivers[-1]

    try:
        yield start
    finally:
        for driver in drivers:
            driver.stop()


def test_lapsed_lease_with_split_traffic_goes_back_to_the_stable_member(eas_server, traffic) -> None:
    client, group = eas_server.client, "deadman"
    blue, green = two_members(client, group)
    load = traffic(group)
    # A run that takes the lease, splits traffic, and is then killed (it never renews).
    client.acquire_lease(group, "killed_dag/run_1", 3, stable=blue)
    client.set_traffic(group, {blue: 50, green: 50})
    split_at = time.monotonic()

    wait_until(lambda: weights(client, group) == {blue: 100, green: 0}, 10, "traffic back to the stable member")
    took = time.monotonic() - split_at
    assert took < 3 + 3, f"reverted {took:.1f} s after the split (TTL 3 s)"
    time.sleep(1)
    load.stop()
    assert load.errors == 0, load.failures_at[:5]

    lease = client.get_lease(group)
    assert lease is not None
    assert lease.revoked
    assert "lapsed" in lease.reason
    assert blue in lease.reason
    assert any("lapsed" in e.message and e.level == "warning" for e in client.describe_group(group).events)
    # `eas group desc` shows who held the group, what the platform did, and why.
    shown = eas(eas_server, "group", "desc", group).stdout
    assert f"Lease     killed_dag/run_1, revoked, stable member {blue} (the lease of killed_dag/run_1 lapsed" in shown
    assert "warning" in shown
    # The run, coming back, learns it lost: its heartbeat is refused with the reason.
    with pytest.raises(RolloutAborted, match="lapsed"):
        client.renew_lease(group, "killed_dag/run_1", 60)
    # The group is free for the next rollout.
    assert client.acquire_lease(group, "next_dag/run_1", 60, stable=blue).holder == "next_dag/run_1"
    client.release_lease(group, "next_dag/run_1")
    assert client.get_lease(group) is None


def test_guard_cuts_off_a_failing_canary_in_seconds(eas_server, traffic) -> None:
    client, group = eas_server.client, "guarded"
    blue, green = two_members(client, group, FAIL_RATE="0.5")
    traffic(group)
    guard = GuardSettings(window_seconds=5, max_error_rate=0.05, min_requests=10)
    client.acquire_lease(group, "canary_dag/run_1", 300, stable=blue, guard=guard)
    client.set_traffic(group, {blue: 50, green: 50})
    shifted = time.monotonic()

    wait_until(lambda: weights(client, group)[green] == 0, 15, "the guard to take the canary's traffic")
    assert time.monotonic() - shifted < 15
    lease = client.get_lease(group)
    assert lease is not None
    assert lease.revoked
    assert "error rate" in lease.reason
    assert green in lease.reason
    with pytest.raises(RolloutAborted, match="error rate"):
        client.renew_lease(group, "canary_dag/run_1", 300)
    client.release_lease(group, "canary_dag/run_1")


def test_heartbeat_keeps_a_short_lease_and_release_frees_it(eas_server) -> None:
    client, group = eas_server.client, "heartbeat"
    blue, green = two_members(client, group)
    client.acquire_lease(group, "dag/run", 2, stable=blue)
    client.set_traffic(group, {blue: 80, green: 20})
    for _ in range(4):  # 4 s of a 2 s lease, renewed every second: nothing reverts
        time.sleep(1)
        client.renew_lease(group, "dag/run", 2)
    assert weights(client, group) == {blue: 80, green: 20}
    # Promotion names the new stable member: a lapse afterwards reverts nothing.
    client.renew_lease(group, "dag/run", 2, stable=green)
    client.set_traffic(group, {blue: 0, green: 100})
    with pytest.raises(Conflict):
        client.acquire_lease(group, "other/run", 60)
    time.sleep(3.5)
    assert weights(client, group) == {blue: 0, green: 100}
    lapsed = client.get_lease(group)
    assert lapsed is not None
    assert lapsed.state == "lapsed", "a lapsed lease with nothing split only frees the group"
    # Its holder may renew it (its stable member kept); another rollout may take the group.
    assert client.renew_lease(group, "dag/run", 60).stable == green
    client.renew_lease(group, "dag/run", 1)
    time.sleep(2.5)
    assert client.acquire_lease(group, "other/run", 60).holder == "other/run"
    client.release_lease(group, "other/run")


def test_lease_body_is_validated(eas_server) -> None:
    client, group = eas_server.client, "leasecheck"
    blue, _ = two_members(client, group)
    with pytest.raises(InvalidSpec, match="stable"):
        client.acquire_lease(group, "dag/run", 60, stable="nope")
    with pytest.raises(InvalidSpec, match=r"guard\.max_error_rate"):
        client.acquire_lease(group, "dag/run", 60, stable=blue, guard=GuardSettings(max_error_rate=2))
