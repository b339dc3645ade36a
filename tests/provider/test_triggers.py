"""airflow_eas.triggers: serialization and platform errors."""

from __future__ import annotations

import asyncio
import importlib
import json

from airflow_eas.analysis import AnalysisPlan

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
