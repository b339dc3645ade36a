"""airflow_eas.analysis: one measurement's verdict, and the verdict of several (Argo Rollouts' rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from airflow_eas.analysis import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    SUCCESSFUL,
    AnalysisPlan,
    AnalysisRun,
    Measurement,
    describe_measurement,
    evaluate,
    measure,
    measure_async,
)
from airflow_eas.errors import InvalidSpec, PlatformUnavailable
from airflow_eas.platform.aio import ThreadedPlatform
from airflow_eas.platform.base import Metrics
from tests.fakes import FakePlatform


def metrics(requests: int, errors: int = 0, p99: float | None = 10.0, name: str = "svc") -> Metrics:
    return Metrics(name, 60, requests, errors, p99 and p99 / 2, p99, p99)


# -- one measurement ----------------------------------------------------------------------------


def test_no_data_is_never_a_pass() -> None:
    limits = AnalysisPlan(min_requests=20, max_error_rate=0.05)
    assert evaluate(metrics(0, p99=None), limits).result == INCONCLUSIVE
    assert evaluate(metrics(19), limits).result == INCONCLUSIVE
    assert evaluate(metrics(20), limits).result == SUCCESSFUL


def test_clear_breach_fails_even_before_min_requests() -> None:
    limits = AnalysisPlan(min_requests=100, max_error_rate=0.01)
    assert evaluate(metrics(10, errors=1), limits).result == INCONCLUSIVE  # 1/100 could still pass
    verdict = evaluate(metrics(10, errors=2), limits)  # 2/100 cannot
    assert verdict.result == FAILED
    assert "error rate" in verdict.message


def test_latency_limits_and_baseline() -> None:
    limits = AnalysisPlan(min_requests=10, max_error_rate=0.1, max_p99_ms=100, baseline_tolerance=1.5)
    assert evaluate(metrics(50, p99=150), limits).result == FAILED
    live = metrics(50, p99=40, name="live")
    assert evaluate(metrics(50, p99=80), limits, live).result == FAILED  # > 1.5 x 40 and > 40 + 10
    assert evaluate(metrics(50, p99=55), limits, live).result == SUCCESSFUL


def test_a_thin_baseline_is_inconclusive_never_a_pass_or_fail() -> None:
    """The p99 of a few requests of the live member is noise: it needs min_requests, as the candidate does."""
    limits = AnalysisPlan(min_requests=20, max_error_rate=0.1, max_p99_ms=500, baseline_tolerance=1.5)
    for live in (metrics(0, p99=None, name="live"), metrics(19, p99=4, name="live")):
        slower = evaluate(metrics(50, p99=80), limits, live)
        assert slower.result == INCONCLUSIVE  # 80 ms vs 4 ms would fail, if 19 requests were enough
        assert slower.reasons == [
            f"the live member live had only {live.requests} requests in the last 60s, need 20 to compare p99 with it"
        ]
        assert evaluate(metrics(50, p99=4), limits, live).result == INCONCLUSIVE  # and would pass
        assert evaluate(metrics(50, errors=10, p99=4), limits, live).result == FAILED  # other breaches still fail
    enough = metrics(20, p99=4, name="live")
    assert evaluate(metrics(50, p99=80), limits, enough).result == FAILED
    assert evaluate(metrics(50, p99=4), limits, enough).result == SUCCESSFUL
    assert evaluate(metrics(50, p99=4), limits).result == SUCCESSFUL  # no live member: nothing to compare


def test_analysis_plan_is_validated_naming_the_field() -> None:
    with pytest.raises(InvalidSpec, match="min_requests"):
        AnalysisPlan.parse({"min_requests": 0})
    with pytest.raises(InvalidSpec, match="max_error: unknown field"):
        AnalysisPlan.parse({"max_error": 1})
    with pytest.raises(InvalidSpec, match="give max or min"):
        AnalysisPlan.parse({"metrics": [{"name": "x", "prometheus": {"url": "http://p", "query": "up"}}]})
    # Rendered templates arrive as text; poll_seconds is the older name of interval_seconds.
    plan = AnalysisPlan.parse({"max_error_rate": "0.05", "poll_seconds": "2"}, count=4)
    assert (plan.max_error_rate, plan.interval_seconds, plan.count) == (0.05, 2.0, 4)


def take(mode: str, platform: FakePlatform, service: str, plan: AnalysisPlan, baseline: str | None = None,
         query: Callable[[str, str, float], float | None] | None = None) -> Measurement:
    """One measurement, read sync (a sensor) or awaited (a trigger): both must judge alike."""
    if mode == "sync":
        return measure(platform, service, plan, baseline, **({"query": query} if query else {}))

    async def aquery(url: str, q: str, timeout: float) -> float | None:
        return query(url, q, timeout)  # type: ignore[misc]

    return asyncio.run(measure_async(ThreadedPlatform(platform), service, plan, baseline,
                                     **({"query": aquery} if query else {})))  # fmt: skip


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
def test_a_measurement_keeps_what_it_measured_and_the_worst_check_wins(mode: str) -> None:
    platform = FakePlatform()
    platform.add_member("g_green", "g", weight=50)
    platform.add_member("g_blue", "g", weight=50)
    platform.metric_values["g_green"] = metrics(100, errors=0, p99=12.0, name="g_green")
    platform.metric_values["g_blue"] = metrics(100, p99=10.0, name="g_blue")
    checks = [
        {"name": "latency", "prometheus": {"url": "http://prom", "query": "q1"}, "max": 0.5},
        {"name": "accuracy", "prometheus": {"url": "http://prom", "query": "q2"}, "min": 0.9},
    ]
    plan = AnalysisPlan(min_requests=10, baseline_tolerance=2, metrics=checks)
    answers = {"q1": 0.2, "q2": 0.95}
    m = take(mode, platform, "g_green", plan, "g_blue", lambda url, q, timeout: answers[q])
    assert m.result == SUCCESSFUL
    assert m.candidate["requests"] == 100
    assert m.baseline["service"] == "g_blue"
    assert [c["value"] for c in m.checks] == [0.2, 0.95]
    line = describe_measurement(1, plan, m.to_dict())
    assert "100 requests" in line
    assert "baseline g_blue" in line
    assert "accuracy = 0.95" in line

    answers["q2"] = 0.5
    assert take(mode, platform, "g_green", plan, query=lambda url, q, timeout: answers[q]).result == FAILED
    answers["q2"] = None  # no data
    assert take(mode, platform, "g_green", plan, query=lambda url, q, timeout: answers[q]).result == INCONCLUSIVE

    def down(url: str, q: str, timeout: float) -> float:
        raise PlatformUnavailable("cannot reach Prometheus at http://prom")

    errored = take(mode, platform, "g_green", plan, query=down)
    assert errored.result == ERROR
    assert "cannot reach Prometheus" in errored.message


@MODES
def test_unreadable_data_plane_is_an_error_not_a_failure(mode: str) -> None:
    platform = FakePlatform()  # no such service: metrics raise NotFound
    assert take(mode, platform, "ghost", AnalysisPlan()).result == ERROR


@MODES
def test_an_unreadable_live_member_is_an_error_never_a_pass_without_the_comparison(mode: str) -> None:
    platform = FakePlatform()
    platform.add_member("g_green", "g", weight=50)
    platform.metric_values["g_green"] = metrics(100, p99=12.0, name="g_green")
    plan = AnalysisPlan(min_requests=10, baseline_tolerance=2)
    m = take(mode, platform, "g_green", plan, "g_gone")  # the live member's metrics raise NotFound
    assert m.result == ERROR
    assert "cannot read the live member's metrics to compare p99" in m.message
    assert take(mode, platform, "g_green", AnalysisPlan(min_requests=10), "g_gone").result == SUCCESSFUL, (
        "no comparison asked for: the live member is not read")


# -- several measurements -----------------------------------------------------------------------


def run_of(*results: str) -> AnalysisRun:
    run = AnalysisRun()
    for r in results:
        run.add(Measurement(r, [f"{r.lower()} measurement"]))
    return run


@pytest.mark.parametrize(
    ("limits", "results", "phase"),
    [
        # Successful after `count` measurements with data; those without data do not count
        ({"count": 3}, [SUCCESSFUL, SUCCESSFUL], None),
        ({"count": 3}, [SUCCESSFUL, SUCCESSFUL, SUCCESSFUL], SUCCESSFUL),
        ({"count": 3, "inconclusive_limit": 1}, [INCONCLUSIVE, SUCCESSFUL, SUCCESSFUL], None),
        ({"count": 3, "inconclusive_limit": 1}, [INCONCLUSIVE, SUCCESSFUL, SUCCESSFUL, SUCCESSFUL], SUCCESSFUL),
        ({"count": 2, "failure_limit": 1}, [FAILED, SUCCESSFUL], SUCCESSFUL),
        # Failed: more than failure_limit failed measurements, at once
        ({"count": 5}, [SUCCESSFUL, FAILED], FAILED),
        ({"count": 5, "failure_limit": 1}, [FAILED, SUCCESSFUL], None),
        ({"count": 5, "failure_limit": 1}, [FAILED, SUCCESSFUL, FAILED], FAILED),
        # Inconclusive: more than inconclusive_limit; never a pass without data
        ({"count": 5, "inconclusive_limit": 1}, [INCONCLUSIVE, INCONCLUSIVE], INCONCLUSIVE),
        ({"count": 2, "inconclusive_limit": 5}, [INCONCLUSIVE] * 5, None),
        ({"count": 2, "inconclusive_limit": 5}, [INCONCLUSIVE] * 6, INCONCLUSIVE),
        # Error: more than consecutive_error_limit errors in a row; errors apart do not add up
        ({"count": 9, "consecutive_error_limit": 2}, [ERROR, ERROR, ERROR], ERROR),
        ({"count": 9, "consecutive_error_limit": 2}, [ERROR, ERROR, SUCCESSFUL, ERROR, ERROR], None),
        ({"count": 2, "consecutive_error_limit": 2}, [ERROR, SUCCESSFUL, ERROR, SUCCESSFUL], SUCCESSFUL),
        # The worst phase wins: a failure beats errors and inconclusive ones
        ({"count": 9, "consecutive_error_limit": 0, "inconclusive_limit": 0}, [INCONCLUSIVE, ERROR, FAILED], FAILED),
    ],
)
def test_verdict_over_several_measurements(limits: dict, results: list[str], phase: str | None) -> None:
    plan = AnalysisPlan(**limits)
    run = run_of(*results)
    assert run.phase(plan) == phase
    if phase:
        summary = run.summary(plan, phase)
        assert summary
        assert (phase != ERROR or "says nothing about the canary" in summary)


def test_run_state_is_json_safe() -> None:
    import json

    run = run_of(SUCCESSFUL, INCONCLUSIVE)
    again = AnalysisRun.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again == run
