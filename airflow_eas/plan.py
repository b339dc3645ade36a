"""The rollout plan: what a scheduled model release does, validated once (Airflow-free).

A plan is a dict or a YAML file (see DESIGN.md); :func:`load_plan` turns it into a
:class:`RolloutPlan` or raises :class:`~airflow_eas.errors.InvalidSpec` naming each bad
field. :func:`airflow_eas.dags.build_rollout_dag` turns a plan into a DAG.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import pendulum
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_eas.analysis import AnalysisPlan
from airflow_eas.errors import InvalidSpec
from airflow_eas.platform.base import GuardSettings
from airflow_eas.spec import check_name, parse_spec

DEFAULT_CANARY_STEPS = [10, 50, 100]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulePlan(_Strict):
    """When runs happen: a cron in a timezone, an asset update, or both (None: manual only)."""

    cron: str | None = None
    timezone: str = "UTC"
    start_date: date | datetime | None = None
    end_date: date | datetime | None = None
    asset: str | list[str] | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter

        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression (minute hour day month weekday, or @daily)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            pendulum.timezone(value)
        except Exception:  # noqa: BLE001
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _dates(self) -> SchedulePlan:
        start, end = _comparable(self.start_date), _comparable(self.end_date)
        if start and end and end < start:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class WarmupPlan(_Strict):
    data_path: str | None = None
    data: list[Any] | None = None
    count: int = Field(default=3, ge=0, le=1000)
    max_errors: int = Field(default=0, ge=0)


class GuardPlan(_Strict):
    """The platform's guard during the canary (``guard: false`` turns it off)."""

    enabled: bool = True
    window_seconds: int = Field(default=10, ge=1, le=900)
    max_error_rate: float | None = Field(default=None, ge=0, le=1, description="default: analysis.max_error_rate")
    min_requests: int = Field(default=20, ge=1)


class TimeoutsPlan(_Strict):
    ready_seconds: int = Field(default=600, ge=1)
    task_seconds: int | None = Field(default=None, ge=1, description="execution_timeout of every task")
    dagrun_seconds: int | None = Field(default=None, ge=1)
    lease_wait_seconds: int = Field(default=0, ge=0)


def _comparable(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime(value.year, value.month, value.day)


class RolloutPlan(_Strict):
    """A rollout plan (see DESIGN.md); every key but ``dag_id``, ``group`` and ``service`` has a default."""

    dag_id: str
    group: str
    service: dict[str, Any]
    eas_conn_id: str = "eas_default"
    description: str | None = None
    schedule: SchedulePlan | None = None
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
    lease_ttl_seconds: int = Field(default=300, ge=10, le=86400, description="renewed by every rollout task")
    guard: GuardPlan = Field(default_factory=GuardPlan)
    deferrable: bool | None = Field(default=None, description="default: [operators] default_deferrable")
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
            raise ValueError("blue_green switches all traffic at once: leave out steps (or use strategy canary)")
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ValueError("steps: weights between 1 and 100")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps: each weight must be larger than the one before")
        if self.steps[-1] != 100:
            raise ValueError("steps: the last step must be 100 (all traffic)")
        return self

    @field_validator("guard", mode="before")
    @classmethod
    def _guard(cls, value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return {"enabled": value is not False}
        return value

    @property
    def guard_settings(self) -> GuardSettings | None:
        """The guard the lease asks the platform for (None: off)."""
        if not self.guard.enabled:
            return None
        rate = self.guard.max_error_rate
        return GuardSettings(
            window_seconds=self.guard.window_seconds,
            max_error_rate=self.analysis.max_error_rate if rate is None else rate,
            min_requests=self.guard.min_requests,
        )

    def run_budget_seconds(self) -> int:
        """A generous bound on one run: the default dagrun timeout."""
        steps = len(self.steps or [])
        per_step = self.bake_seconds + self.analysis.budget_seconds + 60
        return int(self.timeouts.ready_seconds + 600 + steps * per_step + self.scale_down_delay_seconds + 900)


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
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
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


def write_dag_file(folder: Path, plan: dict[str, Any]) -> Path:
    """Write ``plan`` as YAML and a DAG file that builds it, as users do; returns the DAG file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{plan['dag_id']}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    dag_file = folder / f"{plan['dag_id']}.py"
    dag_file.write_text(
        "from pathlib import Path\n\n"
        "from airflow_eas.dags import build_rollout_dag\n\n"
        'dag = build_rollout_dag(Path(__file__).with_suffix(".yaml"))\n'
    )
    return dag_file
