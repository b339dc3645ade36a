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
