"""airflow_eas.plan and airflow_eas.dags: plan validation and the DAG it builds."""

from __future__ import annotations

import importlib

import pytest

from airflow_eas.errors import InvalidSpec
from tests.plans import echo_service, rollout_plan

# -- plans and the DAG --------------------------------------------------------------------------


def test_plan_errors_name_the_field() -> None:
    from airflow_eas.plan import load_plan

    with pytest.raises(InvalidSpec, match="strategy"):
        load_plan(rollout_plan("d", "g", strategy="linear"))
    with pytest.raises(InvalidSpec, match="steps"):
        load_plan(rollout_plan("d", "g", steps=[50, 10, 100]))
    with pytest.raises(InvalidSpec, match="bake_secs: unknown field"):
        load_plan({**rollout_plan("d", "g"), "bake_secs": 3})
    with pytest.raises(InvalidSpec, match="containers.0.port"):
        load_plan(rollout_plan("d", "g", service={**echo_service(), "containers": [{"image": "x", "port": 8080}]}))
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
        "acquire_lease", "deploy", "wait_ready", "warm_up", "release_gate",
        "shift_to_10", "bake_10", "analysis_10", "shift_to_50", "bake_50", "analysis_50",
        "shift_to_100", "bake_100", "analysis_100", "promote",
    ]  # fmt: skip
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert upstream in dag.task_dict[downstream].upstream_task_ids
    assert dag.task_dict["rollback"].trigger_rule == "one_failed"
    assert set(order[1:]) <= dag.task_dict["rollback"].upstream_task_ids
    assert dag.task_dict["acquire_lease"].is_setup
    assert dag.task_dict["release_lease"].is_teardown
    assert dag.task_dict["rollout_failed"].trigger_rule == "one_failed"
    assert dag.max_active_runs == 1
    assert not dag.catchup
    assert dag.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timezone) == "Asia/Shanghai"
    assert set(dag.params) == {"version", "model_path"}
    # A first release skips the canary: the gate's other branch, joining at promote.
    assert dag.task_dict["first_release"].upstream_task_ids == {"release_gate"}
    assert dag.task_dict["promote"].upstream_task_ids == {"analysis_100", "first_release"}
    assert dag.task_dict["promote"].trigger_rule == "none_failed_min_one_success"
    assert [a.uri for a in dag.task_dict["promote"].outlets] == ["eas://fraud/"]
    # Every rollout task renews the lease; the lease names the guard.
    assert dag.task_dict["bake_10"].lease_group == "fraud"
    assert dag.task_dict["analysis_10"].lease_ttl_seconds == plan.get("lease_ttl_seconds", 300)
    assert dag.task_dict["acquire_lease"].guard == {"window_seconds": 10, "max_error_rate": 0.05, "min_requests": 20}
    assert dag.task_dict["analysis_10"].analysis["count"] == 3
    # The p99 comparison is with the member still serving; at 100 % it serves nothing (a thin baseline).
    assert "previous" in dag.task_dict["analysis_50"].baseline_service
    assert dag.task_dict["analysis_100"].baseline_service is None
    assert set(dag.user_defined_macros) == {"bizdate", "cyctime"}


def test_schedule_mistakes_are_refused_when_the_plan_loads() -> None:
    from airflow_eas.plan import load_plan

    with pytest.raises(InvalidSpec, match=r"schedule\.cron: '61 \* \* \* \*' is not a valid cron"):
        load_plan(rollout_plan("d", "g", schedule={"cron": "61 * * * *"}))
    with pytest.raises(InvalidSpec, match=r"schedule\.timezone: unknown timezone 'Mars/Base'"):
        load_plan(rollout_plan("d", "g", schedule={"cron": "0 2 * * *", "timezone": "Mars/Base"}))
    with pytest.raises(InvalidSpec, match=r"schedule\.start_date"):
        load_plan(rollout_plan("d", "g", schedule={"cron": "0 2 * * *", "start_date": "2026-13-01"}))
    with pytest.raises(InvalidSpec, match="end_date 2026-01-01 is before start_date 2026-02-01"):
        load_plan(rollout_plan("d", "g", schedule={"start_date": "2026-02-01", "end_date": "2026-01-01"}))
    with pytest.raises(InvalidSpec, match=r"guard\.window_seconds"):
        load_plan(rollout_plan("d", "g", guard={"window_seconds": 0}))
    assert load_plan(rollout_plan("d", "g", guard=False)).guard_settings is None
    guarded = load_plan(rollout_plan("d", "g", guard={"max_error_rate": 0.2}))
    assert guarded.guard_settings.max_error_rate == 0.2


def test_end_date_bounds_the_schedule() -> None:
    from airflow_eas.dags import build_rollout_dag

    dag = build_rollout_dag(
        rollout_plan("ends", "g", schedule={"cron": "0 2 * * *", "start_date": "2026-01-01", "end_date": "2026-01-03"})
    )
    assert dag.end_date.date().isoformat() == "2026-01-03"
    assert dag.start_date.date().isoformat() == "2026-01-01"


def test_depends_on_past_reaches_every_task() -> None:
    from airflow_eas.dags import build_rollout_dag

    dag = build_rollout_dag(rollout_plan("dop", "g", depends_on_past=True))
    assert all(task.depends_on_past for task in dag.tasks)


def test_blue_green_and_asset_schedule() -> None:
    from airflow_eas.dags import build_rollout_dag

    plan = rollout_plan("bg", "fraud", strategy="blue_green", schedule={"asset": "file:///models/fraud/latest"})
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
