"""airflow_eas.operators.base: templates every EAS operator gets."""

from __future__ import annotations

from types import SimpleNamespace

import pendulum

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
    from airflow_eas.rollout import DeployTarget, member_spec

    spec = member_spec(op.spec, DeployTarget("fraud_blue", "fraud"), model_path=op.model_path)
    assert spec.group == "fraud"
    assert spec.name == "fraud_blue"


def test_bizdate_and_cyctime_are_macros_for_every_task_of_a_rollout_dag() -> None:
    """Not only EAS operators: any task of the DAG (here a plain template) renders them for its run."""
    from types import SimpleNamespace

    import pendulum
    from airflow.sdk.execution_time.context import set_current_context

    from airflow_eas.dags import build_rollout_dag
    from tests.plans import rollout_plan

    dag = build_rollout_dag(rollout_plan("macros", "g", schedule={"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}))
    env = dag.get_template_env()
    context = {"logical_date": pendulum.datetime(2026, 11, 24, 18, 0, tz="UTC"), "dag": dag,
               "dag_run": SimpleNamespace(run_after=None)}  # fmt: skip
    with set_current_context(context):  # as the task runner does while rendering
        text = env.from_string("{{ bizdate }} {{ cyctime }} {{ bizdate[:4] }}").render()
    assert text == "20261124 20261125020000 2026"  # 02:00 on the 25th in Shanghai; bizdate the day before
