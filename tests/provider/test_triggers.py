"""airflow_eas.triggers: serialization, platform errors, and the async reads against a real eas server."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import pytest

from airflow_eas.analysis import AnalysisPlan
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running, wait_until

# -- triggers -----------------------------------------------------------------------------------


def test_triggers_serialize_to_their_own_class() -> None:
    from airflow_eas.triggers.eas import EasMetricsTrigger, EasServiceReadyTrigger

    for trigger in (
        EasServiceReadyTrigger(service="a_blue", eas_conn_id="c", poll_interval=2, deadline=123.0),
        EasMetricsTrigger(
            service="a_green", baseline_service="a_blue", analysis=AnalysisPlan(min_requests=5).to_dict(),
            eas_conn_id="c", poll_interval=1, deadline=None, lease={"group": "a", "holder": "d/r", "ttl_seconds": 60},
        ),
    ):  # fmt: skip
        classpath, kwargs = trigger.serialize()
        json.dumps(kwargs)  # JSON-safe
        module, _, name = classpath.rpartition(".")
        again = getattr(importlib.import_module(module), name)(**kwargs)
        assert type(again) is type(trigger)
        assert again.serialize() == (classpath, kwargs)


def test_trigger_reports_an_unreachable_platform_as_error(monkeypatch) -> None:
    from airflow_eas.triggers.eas import EasServiceReadyTrigger

    monkeypatch.setenv(
        "AIRFLOW_CONN_EAS_NOWHERE",
        json.dumps({"conn_type": "eas", "host": "127.0.0.1", "port": 9, "password": "x"}),
    )
    trigger = EasServiceReadyTrigger(service="s", eas_conn_id="eas_nowhere", poll_interval=0.01,
                                     max_consecutive_errors=2)  # fmt: skip

    async def first():
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first())
    assert payload["status"] == "error"
    assert "cannot reach" in payload["message"]


def _first_event(trigger) -> dict:
    async def first() -> dict:
        async for event in trigger._poll_until_event():  # run() only adds the MIN_DEFER_SECONDS floor
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first())


def test_wait_trigger_renews_the_lease_and_fails_once_the_platform_reverted(monkeypatch) -> None:
    import time

    from airflow_eas.platform.aio import ThreadedPlatform
    from airflow_eas.triggers.eas import EasWaitTrigger
    from tests.fakes import FakePlatform

    platform = FakePlatform()
    platform.add_member("g_blue", "g", weight=50)
    platform.add_member("g_green", "g", weight=50)
    platform.acquire_lease("g", "dag/run", 4, stable="g_blue")
    monkeypatch.setattr(EasWaitTrigger, "_platform", lambda self: ThreadedPlatform(platform))
    lease = {"group": "g", "holder": "dag/run", "ttl_seconds": 4}

    bake = EasWaitTrigger(moment=time.time() + 2.5, eas_conn_id="c", poll_interval=0.1, lease=lease)
    assert _first_event(bake)["status"] == "success"
    assert len(platform.writes("renew_lease")) >= 2  # at the start, then every TTL/4 (1 s)

    platform.revoke("g", "the guard saw g_green fail")
    bake = EasWaitTrigger(moment=time.time() + 60, eas_conn_id="c", poll_interval=0.1, lease=lease)
    event = _first_event(bake)
    assert event["status"] == "failed"
    assert event["message"] == "the platform's guard reverted it: the guard saw g_green fail"


# -- against a real eas server over HTTP ------------------------------------------------------------


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of what the code under test hands to ``asyncio.to_thread``."""
    calls: list[str] = []
    to_thread = asyncio.to_thread

    async def counting(func, /, *args, **kwargs):
        calls.append(getattr(func, "__qualname__", repr(func)))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    return calls


def test_ready_trigger_awaits_a_real_server_over_http(eas_conn, eas_server, thread_calls) -> None:
    from airflow_eas.triggers.eas import EasServiceReadyTrigger

    client = eas_server.client
    client.create(parse_spec(echo_spec("trig_ready", START_DELAY="1.5")))
    event = _first_event(EasServiceReadyTrigger(service="trig_ready", eas_conn_id="eas_default", poll_interval=0.2))
    assert event["status"] == "success", event
    assert event["version"] == 1
    assert event["running_instances"] == 1
    assert client.describe("trig_ready").ready
    # Only the connection is looked up in a thread (Airflow's connection API is sync); every check is awaited.
    assert thread_calls == ["EasBaseTrigger._platform"]

    gone = _first_event(EasServiceReadyTrigger(service="trig_nothing", eas_conn_id="eas_default", poll_interval=0.2))
    assert gone["status"] == "failed"
    assert "trig_nothing" in gone["message"]


def test_ready_trigger_fails_with_the_reason_and_log_lines_of_a_service_that_cannot_start(
    eas_conn, eas_server
) -> None:
    from airflow_eas.triggers.eas import EasServiceReadyTrigger

    eas_server.client.create(parse_spec(echo_spec("trig_crash", EXIT_CODE="3")))
    trigger = EasServiceReadyTrigger(service="trig_crash", log_lines=5, eas_conn_id="eas_default", poll_interval=0.3,
                                     deadline=time.time() + 60)  # fmt: skip
    event = _first_event(trigger)
    assert event["status"] == "failed", event
    assert "trig_crash failed to start: " in event["message"]
    assert "exited with code 3" in event["message"]
    assert "\nlast 5 log lines:\n" in event["message"]
    assert event["message"].rstrip().endswith("echo_app: refusing to start, EXIT_CODE is set")


def test_metrics_trigger_judges_real_traffic_over_http(eas_conn, eas_server, thread_calls) -> None:
    from airflow_eas.triggers.eas import EasMetricsTrigger

    client = eas_server.client
    client.create(parse_spec(echo_spec("trig_good")))
    client.create(parse_spec(echo_spec("trig_bad", FAIL_RATE="1")))
    for name in ("trig_good", "trig_bad"):
        wait_running(client, name)
        for _ in range(25):
            client.invoke(name, "{}")
    plan = AnalysisPlan(window_seconds=120, min_requests=20, max_error_rate=0.05, count=2, interval_seconds=0.2)

    good = _first_event(EasMetricsTrigger(service="trig_good", baseline_service="trig_bad",
                                          analysis=plan.model_copy(update={"baseline_tolerance": 3}).to_dict(),
                                          eas_conn_id="eas_default", poll_interval=0.2))  # fmt: skip
    assert good["status"] == "success", good["message"]
    assert [m["result"] for m in good["measurements"]] == ["Successful", "Successful"]
    assert good["measurements"][-1]["candidate"]["requests"] >= 25
    assert good["measurements"][-1]["baseline"]["service"] == "trig_bad"  # read in the same round

    bad = _first_event(EasMetricsTrigger(service="trig_bad", analysis=plan.to_dict(), eas_conn_id="eas_default",
                                         poll_interval=0.2))  # fmt: skip
    assert bad["status"] == "failed"
    assert bad["phase"] == "Failed"
    assert "error rate 25/25 = 100.0% exceeds 5.0%" in bad["message"]
    assert thread_calls == ["EasBaseTrigger._platform"] * 2


def test_wait_trigger_keeps_a_real_lease_alive_and_learns_the_platform_reverted(eas_conn, eas_server) -> None:
    from airflow_eas.triggers.eas import EasWaitTrigger
    from tests.server.test_rollout_guard import two_members, weights

    client, group = eas_server.client, "trig_lease"
    blue, green = two_members(client, group)
    client.acquire_lease(group, "dag/run", 2, stable=blue)
    client.set_traffic(group, {blue: 80, green: 20})
    lease = {"group": group, "holder": "dag/run", "ttl_seconds": 2}

    # A 5 s bake of a 2 s lease: only the trigger's heartbeats keep the split alive.
    bake = EasWaitTrigger(moment=time.time() + 5, eas_conn_id="eas_default", poll_interval=0.2, lease=lease)
    assert _first_event(bake)["status"] == "success"
    assert weights(client, group) == {blue: 80, green: 20}
    held = client.get_lease(group)
    assert held is not None
    assert not held.revoked

    # The run goes away: the platform reverts, and a trigger of that run learns it at its first heartbeat.
    wait_until(lambda: weights(client, group) == {blue: 100, green: 0}, 10, "the lapsed lease to revert")
    bake = EasWaitTrigger(moment=time.time() + 60, eas_conn_id="eas_default", poll_interval=0.2, lease=lease)
    event = _first_event(bake)
    assert event["status"] == "failed"
    assert event["message"].startswith("the platform's guard reverted it: ")
    assert "lapsed" in event["message"]
    client.release_lease(group, "dag/run")
