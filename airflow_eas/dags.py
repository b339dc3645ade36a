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

``deploy`` picks the group's idle member (``<group>_blue`` / ``<group>_green``); on an
empty group the first member gets all traffic at its first step. A run that was rolled
back ends ``failed``; one that promoted ends ``success``. The lease keeps two runs (even
of different DAGs) off one group.

Templates in the plan's ``service`` see Airflow's context, the run's ``params`` and
DataWorks' scheduling parameters ``{{ bizdate }}`` (``yyyymmdd``, the day before the
scheduled day) and ``{{ cyctime }}`` (``yyyymmddHHMMSS``), in the schedule's timezone.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pendulum
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_eas.analysis import Thresholds
from airflow_eas.errors import InvalidSpec
from airflow_eas.spec import check_name, parse_spec

DEFAULT_CANARY_STEPS = [10, 50, 100]
SERVICE_XCOM = "ti.xcom_pull(task_ids='deploy')"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulePlan(_Strict):
    """When runs happen: a cron in a timezone, an asset update, or both (None: manual only)."""

    cron: str | None = None
    timezone: str = "UTC"
    start_date: date | datetime | None = None
    end_date: date | datetime | None = None
    asset: str | list[str] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            pendulum.timezone(value)
        except Exception:  # noqa: BLE001
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class WarmupPlan(_Strict):
    data_path: str | None = None
    data: list[Any] | None = None
    count: int = Field(default=3, ge=0, le=1000)
    max_errors: int = Field(default=0, ge=0)


class AnalysisPlan(_Strict):
    window_seconds: int = Field(default=60, ge=1)
    min_requests: int = Field(default=20, ge=1)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float | None = Field(default=None, gt=0)
    baseline_tolerance: float | None = Field(default=None, ge=1)
    timeout_seconds: int = Field(default=600, ge=1, description="an analysis without a verdict by then fails")
    poll_seconds: float = Field(default=5, gt=0)


class TimeoutsPlan(_Strict):
    ready_seconds: int = Field(default=600, ge=1)
    task_seconds: int | None = Field(default=None, ge=1, description="execution_timeout of every task")
    dagrun_seconds: int | None = Field(default=None, ge=1)
    lease_wait_seconds: int = Field(default=0, ge=0)


class RolloutPlan(_Strict):
    """A rollout plan (see DESIGN.md); every key but ``dag_id``, ``group`` and ``service`` has a default."""

    dag_id: str
    group: str
    service: dict[str, Any]
    eas_conn_id: str = "eas_default"
    description: str | None = None
    schedule: SchedulePlan | str | None = None
    catchup: bool = False
    depends_on_past: bool = False
    retries: int = Field(default=1, ge=0)
    retry_delay_seconds: int = Field(default=30, ge=0)
    timeouts: TimeoutsPlan = Field(default_factory=TimeoutsPlan)
    params: dict[str, Any] = Field(default_factory=dict)
    warmup: WarmupPlan = Field(default_factory=WarmupPlan)
    strategy: Literal["blue_green", "canary"] = "blue_green"
    steps: list[int] | None = None
    bake_seconds: int = Field(default=60, ge=0)
    analysis: AnalysisPlan = Field(default_factory=AnalysisPlan)
    scale_down_delay_seconds: int = Field(default=300, ge=0)
    scale_down: Literal["stop", "zero", "keep"] = "stop"
    deferrable: bool = True
    tags: list[str] = Field(default_factory=lambda: ["eas", "model-release"])

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        check_name(value, "group")
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return {"cron": value} if isinstance(value, str) else value

    @field_validator("service")
    @classmethod
    def _service(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "name" in value:
            raise ValueError("leave out name: the rollout names the members <group>_blue and <group>_green")
        if "group" in (value.get("metadata") or {}):
            raise ValueError("leave out metadata.group: the plan's group is used")
        return value

    @model_validator(mode="after")
    def _steps(self) -> RolloutPlan:
        if self.steps is None:
            self.steps = [100] if self.strategy == "blue_green" else list(DEFAULT_CANARY_STEPS)
        if self.strategy == "blue_green" and self.steps != [100]:
            raise ValueError(
                "blue_green switches all traffic at once: leave out steps (or use strategy canary)"
            )
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ValueError("steps: weights between 1 and 100")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps: each weight must be larger than the one before")
        if self.steps[-1] != 100:
            raise ValueError("steps: the last step must be 100 (all traffic)")
        return self

    @property
    def thresholds(self) -> Thresholds:
        a = self.analysis
        return Thresholds(
            window_seconds=a.window_seconds,
            min_requests=a.min_requests,
            max_error_rate=a.max_error_rate,
            max_p99_ms=a.max_p99_ms,
            baseline_tolerance=a.baseline_tolerance,
        )

    def run_budget_seconds(self) -> int:
        """A generous bound on one run: lease TTL and default dagrun timeout."""
        steps = len(self.steps or [])
        per_step = self.bake_seconds + self.analysis.timeout_seconds + 60
        return self.timeouts.ready_seconds + 600 + steps * per_step + self.scale_down_delay_seconds + 900


def load_plan(plan: dict[str, Any] | str | Path) -> RolloutPlan:
    """Validate a plan (dict, or path of a YAML file); InvalidSpec names each bad field."""
    if isinstance(plan, (str, Path)):
        path = Path(plan)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise InvalidSpec(f"cannot read rollout plan {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"rollout plan {path} is not valid YAML: {exc}") from None
    else:
        data = plan
    if not isinstance(data, dict):
        raise InvalidSpec("a rollout plan must be a mapping")
    try:
        parsed = RolloutPlan.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "plan"
            msg = (
                "unknown field"
                if err["type"] == "extra_forbidden"
                else err["msg"].removeprefix("Value error, ")
            )
            problems.append(f"{where}: {msg}")
        raise InvalidSpec(f"invalid rollout plan: {'; '.join(problems)}") from None
    _check_service(parsed)
    return parsed


def _check_service(plan: RolloutPlan) -> None:
    """Validate the service spec now when it has no templates (templated specs are checked at deploy)."""
    if "{{" in json.dumps(plan.service) or "{%" in json.dumps(plan.service):
        return
    spec = dict(plan.service, name=f"{plan.group}_blue")
    try:
        parse_spec(spec)
    except InvalidSpec as exc:
        raise InvalidSpec(f"rollout plan {plan.dag_id}: service: {exc.message}") from None


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


def build_rollout_dag(plan: dict[str, Any] | str | Path):  # noqa: ANN201 - airflow.sdk.DAG
    """Build the scheduled rollout DAG of ``plan`` (a dict, or the path of a YAML file)."""
    from airflow.sdk import DAG, TriggerRule

    from airflow_eas.operators.eas import (
        EasAcquireLeaseOperator,
        EasBakeOperator,
        EasDeployServiceOperator,
        EasPromoteOperator,
        EasReleaseLeaseOperator,
        EasRollbackOperator,
        EasRolloutFailedOperator,
        EasTrafficShiftOperator,
        EasWarmUpOperator,
    )
    from airflow_eas.sensors.eas import EasMetricsSensor, EasServiceReadySensor

    p = load_plan(plan)
    schedule, start_date, end_date = _schedule(p)
    budget = p.run_budget_seconds()
    default_args: dict[str, Any] = {
        "owner": "eas",
        "retries": p.retries,
        "retry_delay": timedelta(seconds=p.retry_delay_seconds),
        "depends_on_past": p.depends_on_past,
        "eas_conn_id": p.eas_conn_id,
    }
    if p.timeouts.task_seconds:
        default_args["execution_timeout"] = timedelta(seconds=p.timeouts.task_seconds)

    service = f"{{{{ {SERVICE_XCOM}['service'] }}}}"
    previous = f"{{{{ {SERVICE_XCOM}['previous'] or '' }}}}"
    limits = p.thresholds

    dag = DAG(
        dag_id=p.dag_id,
        description=p.description or f"{p.strategy} rollout of group {p.group}",
        schedule=schedule,
        start_date=start_date,
        end_date=end_date,
        catchup=p.catchup,
        max_active_runs=1,
        dagrun_timeout=timedelta(seconds=p.timeouts.dagrun_seconds or budget),
        default_args=default_args,
        params=_params(p),
        tags=p.tags,
        doc_md=_doc(p),
    )
    # The DAG belongs to the file that called the factory (as @dag does), not to this module.
    caller = sys._getframe().f_back
    if caller is not None:
        dag.fileloc = caller.f_code.co_filename
    with dag:
        acquire = EasAcquireLeaseOperator(
            task_id="acquire_lease",
            group=p.group,
            ttl_seconds=budget,
            wait_seconds=p.timeouts.lease_wait_seconds,
            retries=0,
        )
        deploy = EasDeployServiceOperator(
            task_id="deploy",
            group=p.group,
            spec=p.service,
            model_path="{{ params.model_path or '' }}",
            use_asset_event=bool(p.schedule and p.schedule.asset),
        )
        ready = EasServiceReadySensor(
            task_id="wait_ready",
            service=service,
            timeout=p.timeouts.ready_seconds,
            poke_interval=2,
            deferrable=p.deferrable,
            retries=0,
        )
        warm = EasWarmUpOperator(
            task_id="warm_up",
            service=service,
            data=p.warmup.data,
            data_path=p.warmup.data_path or p.service.get("warm_up_data_path"),
            count=p.warmup.count,
            max_errors=p.warmup.max_errors,
        )
        steps: list[Any] = [acquire, deploy, ready, warm]
        for weight in p.steps or []:
            steps.append(
                EasTrafficShiftOperator(
                    task_id=f"shift_to_{weight}",
                    group=p.group,
                    service=service,
                    weight=weight,
                    previous=previous,
                )
            )
            if p.bake_seconds:
                steps.append(
                    EasBakeOperator(task_id=f"bake_{weight}", seconds=p.bake_seconds, deferrable=p.deferrable)
                )
            steps.append(
                EasMetricsSensor(
                    task_id=f"analysis_{weight}",
                    service=service,
                    baseline_service=previous,
                    window_seconds=limits.window_seconds,
                    min_requests=limits.min_requests,
                    max_error_rate=limits.max_error_rate,
                    max_p99_ms=limits.max_p99_ms,
                    baseline_tolerance=limits.baseline_tolerance,
                    timeout=p.analysis.timeout_seconds,
                    poke_interval=p.analysis.poll_seconds,
                    deferrable=p.deferrable,
                    retries=0,
                )
            )
        promote = EasPromoteOperator(
            task_id="promote",
            group=p.group,
            service=service,
            scale_down_delay_seconds=p.scale_down_delay_seconds,
            scale_down=p.scale_down,
        )
        steps.append(promote)
        for upstream, downstream in zip(steps, steps[1:], strict=False):
            upstream >> downstream

        rollback = EasRollbackOperator(
            task_id="rollback",
            group=p.group,
            service=f"{{{{ ({SERVICE_XCOM} or {{}}).get('service') or '' }}}}",
            previous=f"{{{{ ({SERVICE_XCOM} or {{}}).get('previous') or '' }}}}",
            trigger_rule=TriggerRule.ONE_FAILED,
            retries=3,
        )
        steps[1:] >> rollback  # noqa: B018 - dependency wiring
        # A rolled-back run must end failed: this leaf fails whenever a rollout step failed.
        failed = EasRolloutFailedOperator(
            task_id="rollout_failed", group=p.group, trigger_rule=TriggerRule.ONE_FAILED, retries=0
        )
        [*steps[1:], rollback] >> failed  # noqa: B018

        release = EasReleaseLeaseOperator(task_id="release_lease", group=p.group, retries=3)
        [promote, rollback] >> release  # noqa: B018
        release.as_teardown(setups=acquire)
    return dag


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
    return (
        f"### Model release of group `{p.group}`\n\n"
        f"* strategy: **{p.strategy}**, steps {p.steps}, bake {p.bake_seconds} s each\n"
        f"* schedule: {when}\n"
        f"* analysis: window {a.window_seconds} s, at least {a.min_requests} requests, error rate at most "
        f"{a.max_error_rate:.1%}"
        + (f", p99 at most {a.max_p99_ms:g} ms" if a.max_p99_ms else "")
        + (f", p99 at most {a.baseline_tolerance:g}x the live member" if a.baseline_tolerance else "")
        + f"\n* old member kept {p.scale_down_delay_seconds} s after promotion, then `{p.scale_down}`\n"
        "* any failure rolls traffic back to the previous member; the run then ends failed\n"
    )
