"""Provider pieces without a platform: analysis, plans, DAG shape, templates, serialization, hook."""

from __future__ import annotations

import asyncio
import importlib
import json
from types import SimpleNamespace

import pendulum
import pytest

from airflow_eas.analysis import FAILED, INCONCLUSIVE, SUCCESSFUL, Thresholds, evaluate
from airflow_eas.errors import EasError, InvalidSpec
from airflow_eas.platform.base import GroupInfo, GroupMember, Metrics
from tests.provider.conftest import echo_service, rollout_plan


def metrics(requests: int, errors: int = 0, p99: float | None = 10.0, name: str = "svc") -> Metrics:
    return Metrics(name, 60, requests, errors, p99 and p99 / 2, p99, p99)


# -- analysis ---------------------------------------------------------------------------------


def test_no_data_is_never_a_pass() -> None:
    limits = Thresholds(min_requests=20, max_error_rate=0.05)
    assert evaluate(metrics(0, p99=None), limits).result == INCONCLUSIVE
    assert evaluate(metrics(19), limits).result == INCONCLUSIVE
    assert evaluate(metrics(20), limits).result == SUCCESSFUL


def test_clear_breach_fails_even_before_min_requests() -> None:
    limits = Thresholds(min_requests=100, max_error_rate=0.01)
    assert evaluate(metrics(10, errors=1), limits).result == INCONCLUSIVE  # 1/100 could still pass
    verdict = evaluate(metrics(10, errors=2), limits)  # 2/100 cannot
    assert verdict.result == FAILED
    assert "error rate" in verdict.message


def test_latency_limits_and_baseline() -> None:
    limits = Thresholds(min_requests=10, max_error_rate=0.1, max_p99_ms=100, baseline_tolerance=1.5)
    assert evaluate(metrics(50, p99=150), limits).result == FAILED
    live = metrics(50, p99=40, name="live")
    assert evaluate(metrics(50, p99=80), limits, live).result == FAILED  # > 1.5 x 40 and > 40 + 10
    assert evaluate(metrics(50, p99=55), limits, live).result == SUCCESSFUL
    quiet_live = metrics(0, p99=None, name="live")  # all traffic moved: no comparison possible
    assert evaluate(metrics(50, p99=80), limits, quiet_live).result == SUCCESSFUL


def test_thresholds_are_validated() -> None:
    with pytest.raises(InvalidSpec, match="min_requests"):
        Thresholds(min_requests=0)
    with pytest.raises(InvalidSpec, match="unknown"):
        Thresholds.from_dict({"max_error": 1})


# -- group helpers ----------------------------------------------------------------------------


def test_idle_member_and_weight_split() -> None:
    from airflow_eas.operators.eas import pick_idle_member, shift_weights

    empty = GroupInfo("g", "", "", [])
    assert pick_idle_member("g", empty) == "g_blue"
    one = GroupInfo("g", "", "", [GroupMember("g_blue", 0)])
    assert pick_idle_member("g", one) == "g_blue"  # a retried first deploy picks the same member
    live_blue = GroupInfo("g", "", "", [GroupMember("g_blue", 100), GroupMember("g_green", 0)])
    assert pick_idle_member("g", live_blue) == "g_green"
    both = GroupInfo("g", "", "", [GroupMember("g_blue", 50), GroupMember("g_green", 50)])
    with pytest.raises(EasError, match="both"):
        pick_idle_member("g", both)
    assert shift_weights(live_blue, "g_green", 10) == {"g_green": 10, "g_blue": 90}
    assert shift_weights(empty, "g_blue", 10) == {"g_blue": 100}  # first member: all traffic


# -- plans and the DAG --------------------------------------------------------------------------


def test_plan_errors_name_the_field() -> None:
    from airflow_eas.dags import load_plan

    with pytest.raises(InvalidSpec, match="strategy"):
        load_plan(rollout_plan("d", "g", strategy="linear"))
    with pytest.raises(InvalidSpec, match="steps"):
        load_plan(rollout_plan("d", "g", steps=[50, 10, 100]))
    with pytest.raises(InvalidSpec, match="bake_secs: unknown field"):
        load_plan({**rollout_plan("d", "g"), "bake_secs": 3})
    with pytest.raises(InvalidSpec, match="containers.0.port"):
        load_plan(
            rollout_plan("d", "g", service={**echo_service(), "containers": [{"image": "x", "port": 8080}]})
        )
    with pytest.raises(InvalidSpec, match="leave out name"):
        load_plan(rollout_plan("d", "g", service={**echo_service(), "name": "x"}))


def test_canary_dag_shape(tmp_path) -> None:
    import yaml

    from airflow_eas.dags import build_rollout_dag

    plan = rollout_plan(
        "shape", "fraud", steps=[10, 50, 100], schedule={"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}
    )
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    dag = build_rollout_dag(path)
    assert dag.fileloc == __file__  # the DAG belongs to its caller's file
    order = [
        "acquire_lease", "deploy", "wait_ready", "warm_up",
        "shift_to_10", "bake_10", "analysis_10", "shift_to_50", "bake_50", "analysis_50",
        "shift_to_100", "bake_100", "analysis_100", "promote",
    ]  # fmt: skip
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert upstream in dag.task_dict[downstream].upstream_task_ids
    assert dag.task_dict["rollback"].trigger_rule == "one_failed"
    assert set(order[1:]) <= dag.task_dict["rollback"].upstream_task_ids
    assert dag.task_dict["acquire_lease"].is_setup and dag.task_dict["release_lease"].is_teardown
    assert dag.task_dict["rollout_failed"].trigger_rule == "one_failed"
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.timetable.expression == "0 2 * * *" and str(dag.timetable.timezone) == "Asia/Shanghai"
    assert set(dag.params) == {"version", "model_path"}


def test_blue_green_and_asset_schedule() -> None:
    from airflow_eas.dags import build_rollout_dag

    plan = rollout_plan(
        "bg", "fraud", strategy="blue_green", schedule={"asset": "file:///models/fraud/latest"}
    )
    plan.pop("steps")
    dag = build_rollout_dag(plan)
    assert [t for t in dag.task_dict if t.startswith("shift_to")] == ["shift_to_100"]
    assert "file:///models/fraud/latest" in repr(dag.timetable.asset_condition)
    assert dag.task_dict["deploy"].use_asset_event


def test_example_dags_import() -> None:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "dags"
    files = sorted(folder.glob("*.py"))
    assert files, "no example DAGs"
    for path in files:
        spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.dag.dag_id


# -- templates ----------------------------------------------------------------------------------


def test_dataworks_params_in_the_dag_timezone() -> None:
    from airflow_eas.operators.base import dataworks_params

    dag = SimpleNamespace(timezone=pendulum.timezone("Asia/Shanghai"))
    # 02:00 in Shanghai on 2026-11-25 is 18:00 UTC the day before.
    context = {"logical_date": pendulum.datetime(2026, 11, 24, 18, 0, tz="UTC"), "dag": dag}
    assert dataworks_params(context) == {"bizdate": "20261124", "cyctime": "20261125020000"}
    manual = {"logical_date": None, "dag": dag, "dag_run": SimpleNamespace(run_after=context["logical_date"])}
    assert dataworks_params(manual) == {"bizdate": "20261124", "cyctime": "20261125020000"}


def test_templated_spec_renders_bizdate_cyctime_and_params() -> None:
    from airflow.sdk import DAG

    from airflow_eas.operators.eas import EasDeployServiceOperator

    with DAG("tpl", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")) as dag:
        op = EasDeployServiceOperator(
            task_id="deploy",
            group="fraud",
            spec={
                "processor": "sklearn",
                "model_path": "file:///m/{{ bizdate }}/{{ params.version }}/model.joblib",
                "metadata": {"instance": 1},
            },
            model_path="{{ params.model_path or '' }}",
        )
    context = {
        "logical_date": pendulum.datetime(2026, 11, 24, 18, 0, tz="UTC"),
        "dag": dag,
        "params": {"version": "v7", "model_path": None},
        "cyc": "{{ cyctime }}",
    }
    op.render_template_fields(context)
    assert op.spec["model_path"] == "file:///m/20261124/v7/model.joblib"
    assert op.model_path == ""
    spec = op.build_spec("fraud_blue", "fraud", {})
    assert spec.group == "fraud" and spec.name == "fraud_blue"


# -- triggers -----------------------------------------------------------------------------------


def test_triggers_serialize_to_their_own_class() -> None:
    from airflow_eas.triggers.eas import EasMetricsTrigger, EasServiceReadyTrigger

    for trigger in (
        EasServiceReadyTrigger(service="a_blue", eas_conn_id="c", poll_interval=2, deadline=123.0),
        EasMetricsTrigger(
            service="a_green", baseline_service="a_blue", thresholds=Thresholds(min_requests=5).to_dict(),
            eas_conn_id="c", poll_interval=1, deadline=None,
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
    assert payload["status"] == "error" and "cannot reach" in payload["message"]


# -- hook and provider info ----------------------------------------------------------------------


def test_hook_builds_the_platform_from_the_connection(monkeypatch) -> None:
    from airflow_eas.hooks.eas import EasHook
    from airflow_eas.platform.client import EasClient

    monkeypatch.setenv(
        "AIRFLOW_CONN_EAS_X",
        json.dumps({"conn_type": "eas", "host": "10.0.0.5", "port": 8600, "password": "tok"}),
    )
    platform = EasHook("eas_x").get_platform()
    assert isinstance(platform, EasClient)
    assert platform.endpoint == "http://10.0.0.5:8600" and platform.token == "tok"
    monkeypatch.setenv("AIRFLOW_CONN_EAS_K8S", json.dumps({"conn_type": "kubernetes", "extra": {"gatway_name": "x"}}))
    with pytest.raises(EasError, match="unknown extra.s. gatway_name"):
        EasHook("eas_k8s").get_platform()
    monkeypatch.setenv(
        "AIRFLOW_CONN_EAS_DOWN",
        json.dumps({"conn_type": "eas", "host": "127.0.0.1", "port": 9, "password": "x"}),
    )
    ok, message = EasHook("eas_down", timeout=1).test_connection()
    assert not ok and "cannot reach" in message


def test_provider_info_declares_the_connection_type() -> None:
    from airflow_eas.get_provider_info import get_provider_info

    info = get_provider_info()
    [conn] = info["connection-types"]
    assert conn["connection-type"] == "eas" and conn["hook-class-name"] == "airflow_eas.hooks.eas.EasHook"
    for path in info["extra-links"] + [conn["hook-class-name"]]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)
