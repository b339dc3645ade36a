"""Metric analysis: one evaluator turning a service's metrics into a verdict.

Verdicts (as in Argo Rollouts' analysis):

- ``Successful``: enough requests, every limit met;
- ``Failed``: a clear breach — the new version is bad, roll back now;
- ``Inconclusive``: not enough data yet (no data is never a pass); keep measuring;
- ``Error``: the metrics source could not be read; not a bad canary, keep trying a while.

The sensor (poke mode) and the trigger (deferred mode) both call :func:`evaluate`, so
one rule decides in both places. Each verdict keeps its measurements for the audit trail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_eas.errors import InvalidSpec
from airflow_eas.platform.base import Metrics

SUCCESSFUL = "Successful"
FAILED = "Failed"
INCONCLUSIVE = "Inconclusive"
ERROR = "Error"


@dataclass(frozen=True)
class Thresholds:
    """Limits a service's metrics must meet.

    :param window_seconds: the sliding window the metrics cover
    :param min_requests: fewer requests than this in the window is inconclusive
    :param max_error_rate: highest share of failed requests (5xx, failed connections), 0-1
    :param max_p99_ms: highest p99 latency in ms (None: not checked)
    :param baseline_tolerance: when the live member is given as baseline, the candidate's p99
        may be at most this factor of the baseline's (None: no comparison)
    :param baseline_slack_ms: absolute slack added to the baseline comparison, so that tiny
        latencies (2 ms vs 3 ms) do not fail on noise
    """

    window_seconds: int = 60
    min_requests: int = 20
    max_error_rate: float = 0.01
    max_p99_ms: float | None = None
    baseline_tolerance: float | None = None
    baseline_slack_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.window_seconds < 1:
            raise InvalidSpec("analysis.window_seconds: must be at least 1")
        if self.min_requests < 1:
            raise InvalidSpec("analysis.min_requests: must be at least 1 (no data is never a pass)")
        if not 0 <= self.max_error_rate <= 1:
            raise InvalidSpec("analysis.max_error_rate: must be between 0 and 1")
        if self.max_p99_ms is not None and self.max_p99_ms <= 0:
            raise InvalidSpec("analysis.max_p99_ms: must be positive")
        if self.baseline_tolerance is not None and self.baseline_tolerance < 1:
            raise InvalidSpec("analysis.baseline_tolerance: must be at least 1.0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidSpec(
                f"analysis: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}"
            )
        return cls(**data)


@dataclass
class Verdict:
    """The outcome of one measurement, JSON-safe (it travels in trigger events and XCom)."""

    result: str
    reasons: list[str]
    candidate: dict[str, Any]
    baseline: dict[str, Any] | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return f"{self.result}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(**data)


def evaluate(candidate: Metrics, limits: Thresholds, baseline: Metrics | None = None) -> Verdict:
    """Judge ``candidate``'s metrics against ``limits`` (and the live ``baseline``, when given).

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
    if enough and limits.baseline_tolerance is not None and baseline is not None:
        reasons.extend(_compare_with_baseline(candidate, baseline, limits))

    measured = dict(candidate=candidate.to_dict(), baseline=baseline.to_dict() if baseline else None)
    if reasons:
        return Verdict(FAILED, reasons, thresholds=limits.to_dict(), **measured)
    if not enough:
        note = f"only {requests} requests in the last {limits.window_seconds}s, need {limits.min_requests}"
        return Verdict(INCONCLUSIVE, [note], thresholds=limits.to_dict(), **measured)
    if candidate.p99_ms is None and limits.max_p99_ms is not None:
        return Verdict(INCONCLUSIVE, ["no latency data yet"], thresholds=limits.to_dict(), **measured)
    passed = [f"{requests} requests, error rate {candidate.error_rate:.1%}"]
    if candidate.p99_ms is not None:
        passed.append(f"p99 {candidate.p99_ms:.1f} ms")
    return Verdict(SUCCESSFUL, passed, thresholds=limits.to_dict(), **measured)


def _compare_with_baseline(candidate: Metrics, baseline: Metrics, limits: Thresholds) -> list[str]:
    # A baseline without traffic (all of it moved to the candidate) cannot be compared: skip, not fail.
    if baseline.p99_ms is None or baseline.requests < max(1, limits.min_requests // 4):
        return []
    if candidate.p99_ms is None:
        return []
    allowed = max(
        baseline.p99_ms * (limits.baseline_tolerance or 1.0), baseline.p99_ms + limits.baseline_slack_ms
    )
    if candidate.p99_ms > allowed:
        return [
            f"p99 {candidate.p99_ms:.1f} ms exceeds {allowed:.1f} ms "
            f"({limits.baseline_tolerance:g}x the live member {baseline.service}'s {baseline.p99_ms:.1f} ms)"
        ]
    return []


def error_verdict(message: str, limits: Thresholds) -> Verdict:
    """The metrics source could not be read."""
    return Verdict(ERROR, [message], candidate={}, thresholds=limits.to_dict())
