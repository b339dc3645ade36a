"""``build_rollout_dag(plan)``: a DataWorks-like scheduled model release, from a dict or a YAML file.

The task graph (``canary`` with steps 10, 50, 100; ``blue_green`` is the same with one step, 100)::

    acquire_lease (setup)
      -> deploy -> wait_ready -> warm_up
      -> shift_to_10 -> bake_10 -> analysis_10
      -> shift_to_50 -> bake_50 -> analysis_50
      -> shift_to_100 -> bake_100 -> analysis_100
      -> promote                       (old member scaled down after the delay)
    rollback        (runs when any step above fails: traffic back to the previous member)
    rollout_failed  (fails the run after a rollback: a rolled-back run never ends success)
    release_lease   (teardown: runs whatever happened, once the lease was taken)

``deploy`` picks the group's idle member (``<group>_blue`` / ``<group>_green``). After the
warm-up, ``release_gate`` picks the canary, or, when no member of the group serves traffic
while Running (a new group, every member stopped or Failed), ``first_release``: all traffic
to the new member at once, with the reason in the task log and the group's events. A run
that was rolled back ends ``failed``; one that promoted ends ``success``.

The lease keeps two runs (even of different DAGs) off one group, and is the platform's
dead-man's switch: every task renews it (``lease_ttl_seconds``); if the run dies with the
traffic split, the platform itself gives all traffic back to the stable member, and its
guard does so at once when the canary fails clearly (``guard``). The run then fails with
the platform's reason, and its rollback leaves the group alone.

Templates in the plan's ``service`` see Airflow's context, the run's ``params`` and
DataWorks' scheduling parameters ``{{ bizdate }}`` (``yyyymmdd``, the day before the
scheduled day) and ``{{ cyctime }}`` (``yyyymmddHHMMSS``), in the schedule's timezone.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_eas.plan import RolloutPlan, load_plan

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["RolloutPlan", "build_rollout_dag", "load_plan"]

SERVICE_XCOM = "ti.xcom_pull(task_ids='deploy')"


def _params(plan: RolloutPlan) -> dict[str, Any]:
    from airflow.sdk import Param

    out: dict[str, Any] = {}
    for key, value in plan.params.items():
        if isinstance(value, dict) and "default" in value:
            out[key] = Param(**value)
        else:
            out[key] = Param(value, type=_json_type(value), description=f"run parameter {key}")
    out.setdefault(
        "model_path",
        Param(
            None,
            type=["null", "string"],
            title="Model path",
            description="Deploy this model instead of the plan's model_path (e.g. file:///models/x/model.joblib)",
        ),
    )
    return out


def _json_type(value: Any) -> str | list[str]:
    if value is None:
        return ["null", "string"]
    for kind, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(value, kind):
            return name
    return "string"


def _schedule(plan: RolloutPlan) -> tuple[Any, Any, Any]:
    """(schedule, start_date, end_date) for the DAG."""
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

    sched = plan.schedule
    if sched is None:
        return None, pendulum.datetime(2024, 1, 1, tz="UTC"), None
    tz = pendulum.timezone(sched.timezone)
    start = _as_datetime(sched.start_date, tz) or pendulum.datetime(2024, 1, 1, tz=tz)
    end = _as_datetime(sched.end_date, tz)
    assets = [sched.asset] if isinstance(sched.asset, str) else list(sched.asset or [])
    timetable = CronTriggerTimetable(sched.cron, timezone=tz) if sched.cron else None
    if assets and timetable:
        return AssetOrTimeSchedule(timetable=timetable, assets=[Asset(a) for a in assets]), start, end
    if assets:
        return [Asset(a) for a in assets], start, end
    return timetable, start, end


def _as_datetime(value: date | datetime | None, tz: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return pendulum.instance(value, tz=tz) if value.tzinfo is None else pendulum.instance(value)
    return pendulum.datetime(value.year, value.month, value.day, tz=tz)


def build_rollout_dag(plan: dict[str, Any] | str | Path) -> DAG:
    """Build the scheduled rollout DAG of ``plan`` (a dict, or the path of a YAML file)."""
    p = load_plan(plan)
    dag = _dag(p)
    # The DAG belongs to the file that called the factory (as @dag does), not to this module.
    caller = sys._getframe().f_back
    if caller is not None:
        dag.fileloc = caller.f_code.co_filename
    with dag:
        acquire = _acquire_lease(p)
        steps, promote = _release_steps(p)
        acquire >> steps[0]
        _failure_path(p, acquire, steps, promote)
    return dag


def _dag(p: RolloutPlan) -> DAG:
    from airflow.sdk import DAG

    schedule, start_date, end_date = _schedule(p)
    from airflow_eas.operators.base import dataworks_macros

    default_args: dict[str, Any] = {
        "owner": "eas",
        "retries": p.retries,
        "retry_delay": timedelta(seconds=p.retry_delay_seconds),
        "depends_on_past": p.depends_on_past,
        "eas_conn_id": p.eas_conn_id,
        # every EAS task renews the run's lease (the platform's dead-man's switch)
        "lease_group": p.group,
        "lease_ttl_seconds": p.lease_ttl_seconds,
    }
    if p.timeouts.task_seconds:
        default_args["execution_timeout"] = timedelta(seconds=p.timeouts.task_seconds)
    return DAG(
        dag_id=p.dag_id,
        description=p.description or f"{p.strategy} rollout of group {p.group}",
        schedule=schedule,
        start_date=start_date,
        end_date=end_date,
        catchup=p.catchup,
        max_active_runs=1,
        dagrun_timeout=timedelta(seconds=p.timeouts.dagrun_seconds or p.run_budget_seconds()),
        default_args=default_args,
        params=_params(p),
        tags=p.tags,
        doc_md=_doc(p),
        user_defined_macros=dataworks_macros(),
    )


# Templates of the deployed member and the live member before it, from the deploy task's XCom.
SERVICE = f"{{{{ {SERVICE_XCOM}['service'] }}}}"
PREVIOUS = f"{{{{ {SERVICE_XCOM}['previous'] or '' }}}}"


def _acquire_lease(p: RolloutPlan) -> Any:
    from airflow_eas.operators import EasAcquireLeaseOperator

    guard = p.guard_settings
    return EasAcquireLeaseOperator(
        task_id="acquire_lease",
        group=p.group,
        ttl_seconds=p.lease_ttl_seconds,
        wait_seconds=p.timeouts.lease_wait_seconds,
        guard=guard.to_dict() if guard else None,
        retries=0,
    )


def _release_steps(p: RolloutPlan) -> tuple[list[Any], Any]:
    """deploy -> wait_ready -> warm_up -> release_gate -> (shift, bake, analysis) per step -> promote.

    ``release_gate`` branches to ``first_release`` instead of the canary when nothing serves;
    both paths end in ``promote``. Returns every task and ``promote``.
    """
    from airflow.sdk import TriggerRule

    from airflow_eas.lineage import release_asset
    from airflow_eas.operators import (
        EasDeployServiceOperator,
        EasFirstReleaseOperator,
        EasPromoteOperator,
        EasReleaseGateOperator,
        EasWarmUpOperator,
    )
    from airflow_eas.sensors.eas import EasServiceReadySensor

    steps = p.steps or []
    head: list[Any] = [
        EasDeployServiceOperator(
            task_id="deploy",
            group=p.group,
            spec=p.service,
            model_path="{{ params.model_path or '' }}",
            use_asset_event=bool(p.schedule and p.schedule.asset),
            wait_for_completion=False,  # wait_ready does, with its own timeout
        ),
        EasServiceReadySensor(
            task_id="wait_ready",
            service=SERVICE,
            timeout=p.timeouts.ready_seconds,
            poke_interval=2,
            deferrable=p.deferrable,
            retries=0,
        ),
        EasWarmUpOperator(
            task_id="warm_up",
            service=SERVICE,
            data=p.warmup.data,
            data_path=p.warmup.data_path or p.service.get("warm_up_data_path"),
            count=p.warmup.count,
            max_errors=p.warmup.max_errors,
        ),
    ]
    gate = EasReleaseGateOperator(
        task_id="release_gate",
        group=p.group,
        service=SERVICE,
        canary_task_id=f"shift_to_{steps[0]}",
        first_release_task_id="first_release",
    )
    first = EasFirstReleaseOperator(
        task_id="first_release",
        group=p.group,
        service=SERVICE,
        reason="{{ ti.xcom_pull(task_ids='release_gate', key='first_release') or '' }}",
    )
    canary: list[Any] = []
    for weight in steps:
        canary.extend(_canary_step(p, weight))
    promote = EasPromoteOperator(
        task_id="promote",
        group=p.group,
        service=SERVICE,
        scale_down_delay_seconds=p.scale_down_delay_seconds,
        scale_down=p.scale_down,
        deferrable=p.deferrable,
        outlets=[release_asset(p.group)],
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,  # after the canary, or after first_release
    )
    chain = [*head, gate, *canary, promote]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        upstream >> downstream
    gate >> first >> promote
    return [*head, gate, first, *canary, promote], promote


def _canary_step(p: RolloutPlan, weight: int) -> list[Any]:
    """shift_to_<weight> -> bake_<weight> (when baking) -> analysis_<weight>."""
    from airflow_eas.operators import EasBakeOperator, EasTrafficShiftOperator
    from airflow_eas.sensors.eas import EasMetricsSensor

    tasks: list[Any] = [
        EasTrafficShiftOperator(
            task_id=f"shift_to_{weight}", group=p.group, service=SERVICE, weight=weight, previous=PREVIOUS
        )
    ]
    if p.bake_seconds:
        tasks.append(EasBakeOperator(task_id=f"bake_{weight}", seconds=p.bake_seconds, deferrable=p.deferrable))
    tasks.append(
        EasMetricsSensor(
            task_id=f"analysis_{weight}",
            service=SERVICE,
            # at 100 % the live member gets no traffic: nothing to compare with (a thin baseline is Inconclusive)
            baseline_service=PREVIOUS if weight < 100 else None,
            analysis=p.analysis.to_dict(),
            deferrable=p.deferrable,
            retries=0,
        )
    )
    return tasks


def _failure_path(p: RolloutPlan, acquire: Any, steps: list[Any], promote: Any) -> None:
    """rollback when any step fails, rollout_failed so such a run ends failed, release_lease always."""
    from airflow.sdk import TriggerRule

    from airflow_eas.operators import EasReleaseLeaseOperator, EasRollbackOperator, EasRolloutFailedOperator

    rollback = EasRollbackOperator(
        task_id="rollback",
        group=p.group,
        service=f"{{{{ ({SERVICE_XCOM} or {{}}).get('service') or '' }}}}",
        previous=f"{{{{ ({SERVICE_XCOM} or {{}}).get('previous') or '' }}}}",
        trigger_rule=TriggerRule.ONE_FAILED,
        retries=3,
    )
    steps >> rollback  # dependency wiring: any failed step triggers the rollback
    failed = EasRolloutFailedOperator(
        task_id="rollout_failed", group=p.group, trigger_rule=TriggerRule.ONE_FAILED, retries=0
    )
    [*steps, rollback] >> failed
    release = EasReleaseLeaseOperator(task_id="release_lease", group=p.group, retries=3)
    [promote, rollback] >> release
    release.as_teardown(setups=acquire)


def _doc(p: RolloutPlan) -> str:
    if p.schedule is None:
        when = "manual runs only"
    else:
        s = p.schedule
        when = ", ".join(
            x
            for x in (
                f"cron `{s.cron}` ({s.timezone})" if s.cron else "",
                f"asset `{s.asset}`" if s.asset else "",
            )
            if x
        )
    a = p.analysis
    guard = p.guard_settings
    return (
        f"### Model release of group `{p.group}`\n\n"
        f"* strategy: **{p.strategy}**, steps {p.steps}, bake {p.bake_seconds} s each\n"
        f"* schedule: {when}\n"
        f"* analysis: window {a.window_seconds} s, at least {a.min_requests} requests, error rate at most "
        f"{a.max_error_rate:.1%}"
        + (f", p99 at most {a.max_p99_ms:g} ms" if a.max_p99_ms else "")
        + (f", p99 at most {a.baseline_tolerance:g}x the live member" if a.baseline_tolerance else "")
        + f" ({a.count} measurements every {a.interval_seconds:g} s)"
        + f"\n* old member kept {p.scale_down_delay_seconds} s after promotion, then `{p.scale_down}`\n"
        + f"* lease TTL {p.lease_ttl_seconds} s (the platform reverts a dead run); guard "
        + (f"{guard.max_error_rate:.1%} errors over {guard.window_seconds} s\n" if guard else "off\n")
        + "* any failure rolls traffic back to the previous member; the run then ends failed\n"
    )
