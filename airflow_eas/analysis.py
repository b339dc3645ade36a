"""Canary analysis over several measurements, as Argo Rollouts and Kayenta run it (Airflow-free).

One model, :class:`AnalysisPlan`, is the plan's ``analysis`` section, the metrics sensor's
argument and the trigger's payload. A measurement (:func:`measure`) reads the candidate's
data-plane metrics (and the live member's, for a latency comparison) plus every custom
check (``metrics: [{name, prometheus: {url, query}, max | min}]``) and gives one of:

- ``Successful``: enough requests, every limit met;
- ``Failed``: a clear breach (the new version is bad);
- ``Inconclusive``: not enough data (no data is never a pass);
- ``Error``: a metrics source could not be read (not a bad canary).

The worst result of a measurement's checks wins (Failed > Error > Inconclusive > Successful).
An :class:`AnalysisRun` takes a measurement every ``interval_seconds`` and settles by Argo's
limits: Failed once more than ``failure_limit`` measurements failed, Error once more than
``consecutive_error_limit`` errors came in a row, Inconclusive once more than
``inconclusive_limit`` were inconclusive; Successful once ``count`` measurements with data
(Successful or Failed) were taken within those limits. Unlike Argo, measurements without data
do not use up ``count``: a window still filling after a traffic shift costs only inconclusive
measurements, never the verdict (no data is never a pass). Every measurement is kept (window,
requests, error rate, p99, baseline, each check) for the task log and XCom.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from airflow_eas.errors import EasError, InvalidSpec
from airflow_eas.platform.aio import AsyncPlatform
from airflow_eas.platform.base import Metrics, Platform
from airflow_eas.prometheus import query_scalar, query_scalar_async
from airflow_eas.spec import format_errors

SUCCESSFUL = "Successful"
INCONCLUSIVE = "Inconclusive"
ERROR = "Error"
FAILED = "Failed"
_SEVERITY = {SUCCESSFUL: 0, INCONCLUSIVE: 1, ERROR: 2, FAILED: 3}
T = TypeVar("T")


def worst(*results: str) -> str:
    return max(results, key=_SEVERITY.__getitem__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PrometheusQuery(_Strict):
    url: str = Field(description="the Prometheus base URL, e.g. http://prometheus:9090")
    query: str = Field(min_length=1, description="an instant query giving one number")
    timeout_seconds: float = Field(default=10, gt=0)


class MetricCheck(_Strict):
    """A custom check: a Prometheus query whose value must stay at most ``max`` / at least ``min``."""

    name: str = Field(min_length=1)
    prometheus: PrometheusQuery
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _limits(self) -> MetricCheck:
        if self.max is None and self.min is None:
            raise ValueError(f"metric {self.name}: give max or min")
        return self


class AnalysisPlan(_Strict):
    """What a canary must show, and how often it is measured.

    :param window_seconds: the sliding window each data-plane measurement covers
    :param min_requests: fewer requests than this in the window is inconclusive
    :param max_error_rate: highest share of failed requests (5xx, failed connections), 0-1
    :param max_p99_ms: highest p99 latency in ms (None: not checked)
    :param baseline_tolerance: the candidate's p99 may be at most this factor of the live member's; the
        live member needs ``min_requests`` in the window too, or the measurement is Inconclusive
    :param baseline_slack_ms: absolute slack on that comparison (2 ms vs 3 ms is noise)
    :param interval_seconds: time between measurements (``poll_seconds`` is accepted too)
    :param count: measurements with data (Successful or Failed) needed for a Successful verdict
    :param failure_limit: failed measurements tolerated (more: Failed)
    :param inconclusive_limit: inconclusive measurements tolerated (more: Inconclusive)
    :param consecutive_error_limit: unreadable measurements in a row tolerated (more: Error)
    :param timeout_seconds: bound on the whole analysis (default: every measurement the limits allow,
        at its interval, plus 60 s)
    :param metrics: custom Prometheus checks, judged by the same rules
    """

    window_seconds: int = Field(default=60, ge=1)
    min_requests: int = Field(default=20, ge=1, description="no data is never a pass")
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float | None = Field(default=None, gt=0)
    baseline_tolerance: float | None = Field(default=None, ge=1)
    baseline_slack_ms: float = Field(default=10.0, ge=0)
    interval_seconds: float = Field(default=5, gt=0, validation_alias=AliasChoices("interval_seconds", "poll_seconds"))
    count: int = Field(default=3, ge=1, le=10000)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=10, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    timeout_seconds: int | None = Field(default=None, ge=1)
    metrics: list[MetricCheck] = Field(default_factory=list)

    @classmethod
    def parse(cls, data: AnalysisPlan | dict[str, Any] | None = None, **overrides: Any) -> AnalysisPlan:
        """From a plan section (a dict, maybe rendered from templates) and overrides; InvalidSpec names the field."""
        base = data.model_dump() if isinstance(data, AnalysisPlan) else dict(data or {})
        merged = {**base, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise InvalidSpec(f"analysis: {format_errors(exc)}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def budget_seconds(self) -> float:
        """How long the analysis may take at most."""
        most = self.count + self.failure_limit + self.inconclusive_limit + self.consecutive_error_limit + 1
        return float(self.timeout_seconds or most * self.interval_seconds + 60)


# -- one measurement ----------------------------------------------------------------------------


@dataclass
class Measurement:
    """One measurement: its result, why, and what was measured (JSON-safe: XCom, trigger events)."""

    result: str
    reasons: list[str]
    candidate: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.time)

    @property
    def message(self) -> str:
        return f"{self.result}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**data)


# The verdict of one data-plane measurement (kept as a name: it is what ``evaluate`` answers).
Verdict = Measurement


def evaluate(candidate: Metrics, limits: AnalysisPlan, baseline: Metrics | None = None) -> Measurement:
    """Judge ``candidate``'s data-plane metrics against ``limits`` (and the live ``baseline``).

    A breach is *clear* (Failed) when it holds whatever the missing requests would do:
    before ``min_requests`` is reached, errors already above ``max_error_rate * min_requests``
    fail at once; latency limits are only judged once there are enough requests.
    """
    reasons: list[str] = []
    requests, errors = candidate.requests, candidate.errors
    # Errors over max(requests, min_requests): a few early errors cannot hide behind little traffic.
    settled_rate = errors / max(requests, limits.min_requests)
    enough = requests >= limits.min_requests

    if settled_rate > limits.max_error_rate:
        reasons.append(
            f"error rate {errors}/{requests} = {candidate.error_rate:.1%} exceeds {limits.max_error_rate:.1%}"
        )
    if enough and limits.max_p99_ms is not None and candidate.p99_ms is not None:
        if candidate.p99_ms > limits.max_p99_ms:
            reasons.append(f"p99 {candidate.p99_ms:.1f} ms exceeds {limits.max_p99_ms:g} ms")
    thin_baseline = None
    if enough:
        slower, thin_baseline = _compare_with_baseline(candidate, baseline, limits)
        reasons.extend(slower)

    measured = {"candidate": candidate.to_dict(), "baseline": baseline.to_dict() if baseline else None}
    if reasons:
        return Measurement(FAILED, reasons, **measured)
    if not enough:
        note = f"only {requests} requests in the last {limits.window_seconds}s, need {limits.min_requests}"
        return Measurement(INCONCLUSIVE, [note], **measured)
    if candidate.p99_ms is None and limits.max_p99_ms is not None:
        return Measurement(INCONCLUSIVE, ["no latency data yet"], **measured)
    if thin_baseline is not None:
        return Measurement(INCONCLUSIVE, [thin_baseline], **measured)
    passed = [f"{requests} requests, error rate {candidate.error_rate:.1%}"]
    if candidate.p99_ms is not None:
        passed.append(f"p99 {candidate.p99_ms:.1f} ms")
    return Measurement(SUCCESSFUL, passed, **measured)


def _compare_with_baseline(
    candidate: Metrics, baseline: Metrics | None, limits: AnalysisPlan
) -> tuple[list[str], str | None]:
    """The p99 comparison with the live member: its failures, or why it cannot be made (Inconclusive).

    The p99 of a few requests is noise, so the live member needs ``min_requests`` as the candidate does."""
    if limits.baseline_tolerance is None or baseline is None or candidate.p99_ms is None:
        return [], None
    if baseline.requests < limits.min_requests or baseline.p99_ms is None:
        return [], (
            f"the live member {baseline.service} had only {baseline.requests} requests in the last "
            f"{limits.window_seconds}s, need {limits.min_requests} to compare p99 with it"
        )
    allowed = max(baseline.p99_ms * limits.baseline_tolerance, baseline.p99_ms + limits.baseline_slack_ms)
    if candidate.p99_ms > allowed:
        return [
            f"p99 {candidate.p99_ms:.1f} ms exceeds {allowed:.1f} ms "
            f"({limits.baseline_tolerance:g}x the live member {baseline.service}'s {baseline.p99_ms:.1f} ms)"
        ], None
    return [], None


def judge_check(check: MetricCheck, value: float | None | EasError) -> dict[str, Any]:
    """One custom check from the value its query gave (``Error`` when Prometheus could not answer)."""
    q = check.prometheus
    out: dict[str, Any] = {"name": check.name, "query": q.query, "value": None}
    if isinstance(value, EasError):
        return {**out, "result": ERROR, "reason": f"{check.name}: {value.message}"}
    out["value"] = value
    if value is None:
        return {**out, "result": INCONCLUSIVE, "reason": f"{check.name}: no data"}
    if check.max is not None and value > check.max:
        return {**out, "result": FAILED, "reason": f"{check.name} = {value:g} exceeds {check.max:g}"}
    if check.min is not None and value < check.min:
        return {**out, "result": FAILED, "reason": f"{check.name} = {value:g} is below {check.min:g}"}
    return {**out, "result": SUCCESSFUL, "reason": f"{check.name} = {value:g}"}


def judge(
    service: str,
    plan: AnalysisPlan,
    candidate: Metrics | EasError,
    baseline: Metrics | EasError | None,
    values: list[float | None | EasError],
) -> Measurement:
    """One measurement from what was read (an EasError where a read failed); the worst result wins.

    The reading is the caller's, sync (:func:`measure`) or async (:func:`measure_async`): both judge here.
    """
    if isinstance(candidate, EasError):
        measurement = Measurement(ERROR, [f"cannot read metrics of {service}: {candidate.message}"])
    else:
        measurement = evaluate(candidate, plan, baseline if isinstance(baseline, Metrics) else None)
        if isinstance(baseline, EasError):
            # the comparison asked for cannot be made: an Error (counted like any failed read), never a pass
            # on the absolute limits alone
            measurement.reasons.append(f"cannot read the live member's metrics to compare p99: {baseline.message}")
            measurement.result = worst(measurement.result, ERROR)
    for check, value in zip(plan.metrics, values, strict=True):
        outcome = judge_check(check, value)
        measurement.checks.append(outcome)
        if outcome["result"] != SUCCESSFUL:
            measurement.reasons.append(outcome["reason"])
        measurement.result = worst(measurement.result, outcome["result"])
    return measurement


def _wants_baseline(plan: AnalysisPlan, baseline_service: str | None) -> bool:
    return bool(baseline_service) and plan.baseline_tolerance is not None


def _read(read: Callable[..., T], *args: Any) -> T | EasError:
    try:
        return read(*args)
    except EasError as exc:
        return exc


async def _read_async(read: Callable[..., Awaitable[T]], *args: Any) -> T | EasError:
    try:
        return await read(*args)
    except EasError as exc:
        return exc


async def _no_read() -> None:
    return None


def measure(
    platform: Platform,
    service: str,
    plan: AnalysisPlan,
    baseline_service: str | None = None,
    *,
    query: Callable[[str, str, float], float | None] = query_scalar,
) -> Measurement:
    """One measurement of ``service``: data-plane metrics and every custom check (see :func:`judge`)."""
    candidate = _read(platform.metrics, service, plan.window_seconds)
    baseline = None
    if _wants_baseline(plan, baseline_service) and not isinstance(candidate, EasError):
        baseline = _read(platform.metrics, baseline_service, plan.window_seconds)
    values = [_read(query, c.prometheus.url, c.prometheus.query, c.prometheus.timeout_seconds) for c in plan.metrics]
    return judge(service, plan, candidate, baseline, values)


async def measure_async(
    platform: AsyncPlatform,
    service: str,
    plan: AnalysisPlan,
    baseline_service: str | None = None,
    *,
    query: Callable[[str, str, float], Awaitable[float | None]] = query_scalar_async,
) -> Measurement:
    """:func:`measure` on the caller's event loop (a trigger): every read at once, judged alike."""
    candidate, baseline, *values = await asyncio.gather(
        _read_async(platform.metrics, service, plan.window_seconds),
        _read_async(platform.metrics, baseline_service, plan.window_seconds)
        if _wants_baseline(plan, baseline_service) else _no_read(),
        *(_read_async(query, c.prometheus.url, c.prometheus.query, c.prometheus.timeout_seconds)
          for c in plan.metrics),
    )  # fmt: skip
    return judge(service, plan, candidate, baseline, values)


# -- several measurements -----------------------------------------------------------------------


@dataclass
class AnalysisRun:
    """The measurements of one analysis so far, and the verdict they give (JSON-safe)."""

    measurements: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    def add(self, measurement: Measurement) -> None:
        self.measurements.append(measurement.to_dict())

    def tally(self, result: str) -> int:
        return sum(1 for m in self.measurements if m["result"] == result)

    def consecutive_errors(self) -> int:
        n = 0
        for m in reversed(self.measurements):
            if m["result"] != ERROR:
                break
            n += 1
        return n

    def phase(self, plan: AnalysisPlan) -> str | None:
        """The verdict once settled (Argo's limits; the worst phase wins), else None: measure again."""
        failed, inconclusive = self.tally(FAILED), self.tally(INCONCLUSIVE)
        if failed > plan.failure_limit:
            return FAILED
        if self.consecutive_errors() > plan.consecutive_error_limit:
            return ERROR
        if inconclusive > plan.inconclusive_limit:
            return INCONCLUSIVE
        if self.tally(SUCCESSFUL) + failed >= plan.count:
            return SUCCESSFUL  # count measurements with data, failures within the limit
        return None

    def summary(self, plan: AnalysisPlan, phase: str) -> str:
        n = len(self.measurements)
        last = self.measurements[-1] if self.measurements else {"reasons": []}
        detail = "; ".join(last["reasons"])
        if phase == FAILED:
            return (f"{self.tally(FAILED)} of {n} measurements failed (failure_limit {plan.failure_limit}); "
                    f"last: {detail}")
        if phase == ERROR:
            return (f"{self.consecutive_errors()} measurements in a row could not read the metrics "
                    f"(consecutive_error_limit {plan.consecutive_error_limit}): {detail}; "
                    "the metrics source is down, this says nothing about the canary")
        if phase == INCONCLUSIVE:
            return (f"{self.tally(INCONCLUSIVE)} of {n} measurements inconclusive (inconclusive_limit "
                    f"{plan.inconclusive_limit}): {detail}; no data is never a pass")
        return f"{self.tally(SUCCESSFUL)} of {n} measurements passed (count {plan.count}); last: {detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AnalysisRun:
        return cls(**data) if data else cls()


def describe_measurement(index: int, plan: AnalysisPlan, m: dict[str, Any]) -> str:
    """One log line per measurement: the window, what was measured, the result."""
    c = m.get("candidate") or {}
    parts = [f"measurement {index}/{plan.count}: {m['result']}"]
    if c:
        p99 = c.get("p99_ms")
        parts.append(
            f"window {c.get('window_seconds')} s, {c.get('requests')} requests, error rate "
            f"{c.get('error_rate', 0):.1%}, p99 {'-' if p99 is None else f'{p99:.1f} ms'}"
        )
    b = m.get("baseline")
    if b:
        bp99 = b.get("p99_ms")
        parts.append(f"baseline {b.get('service')}: {b.get('requests')} requests, p99 "
                     f"{'-' if bp99 is None else f'{bp99:.1f} ms'}")
    parts.extend(f"{x['name']} = {x['value']}" for x in m.get("checks") or [])
    return " | ".join(parts) + " | " + "; ".join(m["reasons"])
