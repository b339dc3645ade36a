"""One handler per instance state: what a user sees an instance do (see airflow_eas/server/reconciler/lifecycle.py)."""

from __future__ import annotations

import time

from airflow_eas.server.reconciler.gateway_sync import Sessions
from airflow_eas.server.reconciler.lifecycle import GONE
from airflow_eas.server.runtimes.base import ExitStatus
from airflow_eas.server.store import BACKOFF, DRAINING, RUNNING, STARTING, STOPPING
from tests.server.reconciler.conftest import Rig


def test_draining_instance_with_requests_in_flight_stays_until_drained(rig: Rig) -> None:
    inst = rig.instance(DRAINING, since_s=0.1)
    rig.sessions = Sessions(time.time(), {("g_grp", "svc.abc123"): 2})
    rig.step(inst)
    assert inst.state == DRAINING, "requests still in flight: it must keep serving them"
    assert rig.runtime.signals == []
    rig.sessions = Sessions(time.time(), {("g_grp", "svc.abc123"): 0, ("s_svc", "other"): 5})
    rig.step(inst)
    assert inst.state == STOPPING
    rig.step(inst, until=lambda: bool(rig.runtime.signals))
    assert rig.runtime.signals == [("term", "h-svc-abc123")]


def test_draining_counts_only_after_the_gateway_took_the_drain(rig: Rig) -> None:
    inst = rig.instance(DRAINING, since_s=0.1)
    rig.sessions = Sessions(inst.state_since - 1, {})  # counted before the drain was applied: says nothing
    rig.step(inst)
    assert inst.state == DRAINING


def test_draining_instance_is_stopped_after_drain_timeout_even_with_requests(rig: Rig) -> None:
    inst = rig.instance(DRAINING, since_s=0.1)
    rig.sessions = Sessions(time.time(), {("s_svc", "svc-abc123"): 1})
    rig.step(inst)
    assert inst.state == DRAINING
    inst.state_since -= 1.0  # the drain timeout (1 s here) has passed
    rig.step(inst)
    assert inst.state == STOPPING


def test_ready_instance_is_routed_before_it_is_called_running(rig: Rig, monkeypatch) -> None:
    monkeypatch.setattr("airflow_eas.server.reconciler.lifecycle.is_ready", lambda *a, **k: True)
    inst = rig.instance(STARTING)
    inst.in_gateway = False
    rig.step(inst, until=lambda: inst.in_gateway)
    assert inst.in_gateway
    assert inst.state == STARTING, "Running only once the gateway routes to it"
    assert inst.id in rig.lifecycle.promotions
    events = [e["message"] for e in rig.store.events("svc")]
    assert any("is ready" in m for m in events)
    rig.step(inst)
    assert sum("is ready" in e["message"] for e in rig.store.events("svc")) == 1, "ready is said once"


def test_running_instance_that_dies_backs_off_and_says_why(rig: Rig) -> None:
    inst = rig.instance(RUNNING, since_s=5)
    rig.runtime.exits[inst.handle] = ExitStatus(-9)
    rig.step(inst, until=lambda: inst.state == BACKOFF)
    assert inst.state == BACKOFF
    assert inst.restarts == 1
    assert inst.restart_at is not None
    assert inst.restart_at > time.time()
    assert any("killed by signal 9; restarting in 0.5 s" in e["message"] for e in rig.store.events("svc"))


def test_three_deaths_before_ready_mark_the_version_failed(rig: Rig) -> None:
    inst = rig.instance(STARTING)
    rig.runtime.exits[inst.handle] = ExitStatus(1)
    for _ in range(3):
        inst.state, inst.state_since = STARTING, time.time()
        rig.step(inst, until=lambda: inst.state != STARTING)
    svc = rig.store.service("svc")
    assert svc.failed_version == 1
    assert "3 instances failed to start" in svc.reason
    assert inst.state == STOPPING


def test_stopping_instance_is_killed_after_grace_and_removed_once_it_exits(rig: Rig) -> None:
    inst = rig.instance(STOPPING, since_s=1.0)  # past the grace (0.3 s here)
    rig.step(inst, until=lambda: ("kill", inst.handle) in rig.runtime.signals)
    assert ("kill", inst.handle) in rig.runtime.signals
    assert rig.store.instances("svc"), "still there while it runs"
    rig.runtime.exits[inst.handle] = ExitStatus(-9)
    rig.step(inst, until=lambda: inst.state == GONE)
    assert inst.state == GONE
    assert rig.store.instances("svc") == []
