"""airflow_eas.analysis: verdicts from metrics and limits."""

from __future__ import annotations

import pytest

from airflow_eas.analysis import FAILED, INCONCLUSIVE, SUCCESSFUL, Thresholds, evaluate
from airflow_eas.errors import InvalidSpec
from airflow_eas.platform.base import Metrics


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
