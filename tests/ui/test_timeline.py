"""The rollout timeline from a run's task instances and XComs (no Airflow needed)."""

from __future__ import annotations

from airflow_eas.errors import PlatformUnavailable
from airflow_eas.platform.base import Series
from airflow_eas.ui.timeline import TaskRecord, add_member_series, build_timeline, series_window
from tests.fakes import FakePlatform

T0 = 1_800_000_000.0
LIMITS = {"window_seconds": 60, "min_requests": 100, "max_error_rate": 0.01, "max_p99_ms": 300,
          "baseline_tolerance": 1.5, "baseline_slack_ms": 10.0}


def verdict(result: str, rate: float) -> dict:
    return {"status": "success", "message": result, "verdict": {
        "result": result, "reasons": [f"error rate {rate:.1%}"], "thresholds": LIMITS,
        "candidate": {"service": "fraud_green", "requests": 400, "errors": int(400 * rate), "error_rate": rate,
                      "p99_ms": 40.0},
        "baseline": {"service": "fraud_blue", "requests": 900, "errors": 0, "error_rate": 0.0, "p99_ms": 35.0}}}


def canary(last: str) -> tuple[list[TaskRecord], dict]:
    tasks = [
        TaskRecord("acquire_lease", "success", T0, T0 + 1),
        TaskRecord("deploy", "success", T0 + 1, T0 + 2),
        TaskRecord("wait_ready", "success", T0 + 2, T0 + 10),
        TaskRecord("warm_up", "success", T0 + 10, T0 + 12),
        TaskRecord("shift_to_10", "success", T0 + 12, T0 + 13),
        TaskRecord("analysis_10", "success", T0 + 13, T0 + 80),
        TaskRecord("shift_to_50", "success", T0 + 80, T0 + 81),
    ]
    xcoms = {
        "deploy": {"service": "fraud_green", "previous": "fraud_blue", "group": "fraud", "version": 3},
        "shift_to_10": {"fraud_green": 10, "fraud_blue": 90},
        "analysis_10": verdict("Successful", 0.0),
        "shift_to_50": {"fraud_green": 50, "fraud_blue": 50},
    }
    if last == "promote":
        tasks += [TaskRecord("analysis_50", "success", T0 + 81, T0 + 150),
                  TaskRecord("promote", "success", T0 + 150, T0 + 460),
                  TaskRecord("rollback", "skipped", None, T0 + 460)]
        xcoms["analysis_50"] = verdict("Successful", 0.002)
        xcoms["promote"] = {"service": "fraud_green", "scaled_down": ["fraud_blue"]}
    else:
        tasks += [TaskRecord("analysis_50", "failed", T0 + 81, T0 + 120),
                  TaskRecord("promote", "upstream_failed", None, None),
                  TaskRecord("rollback", "success", T0 + 121, T0 + 122),
                  TaskRecord("rollout_failed", "failed", T0 + 122, T0 + 123)]
        xcoms["rollback"] = {"service": "fraud_green", "previous": "fraud_blue",
                             "weights": {"fraud_green": 0, "fraud_blue": 100}}
    return tasks, xcoms


def test_a_promoted_canary_steps_its_weights_and_marks_each_verdict() -> None:
    tasks, xcoms = canary("promote")
    t = build_timeline(tasks, xcoms, now=T0 + 500, run_state="success")
    assert (t["candidate"], t["stable"], t["group"], t["outcome"]) == ("fraud_green", "fraud_blue", "fraud", "promoted")
    w = t["weights"]
    assert w["t"] == [T0, T0 + 13, T0 + 81, T0 + 150, T0 + 460]
    assert w["candidate"] == [0, 10, 50, 100, 100]  # promotion moves the traffic when it starts
    assert w["stable"] == [100, 90, 50, 0, 0]
    assert [(v["step"], v["result"], v["passed"]) for v in t["verdicts"]] == [
        (10, "Successful", True), (50, "Successful", True)]
    assert t["thresholds"]["max_error_rate"] == 0.01
    assert t["thresholds"]["max_p99_ms"] == 300
    kinds = [(m["kind"], m["ok"]) for m in t["markers"]]
    assert kinds == [("shift", True), ("verdict", True), ("shift", True), ("verdict", True), ("promote", True)]


def test_a_failed_analysis_then_rollback_is_marked_red_and_traffic_goes_back() -> None:
    tasks, xcoms = canary("rollback")
    t = build_timeline(tasks, xcoms, now=T0 + 500, run_state="failed")
    assert t["outcome"] == "rolled back"
    assert t["weights"]["candidate"][-2:] == [0, 0]
    assert t["weights"]["stable"][-1] == 100
    failed = t["verdicts"][-1]
    assert (failed["step"], failed["passed"], failed["result"]) == (50, False, "Failed")
    labels = [(m["label"], m["ok"]) for m in t["markers"]]
    assert ("analysis at 50%: Failed", False) in labels
    assert ("rolled back to fraud_blue", False) in labels
    assert not any("rollout_failed" in label for label, _ in labels)  # the run's own failure leaf is no event


def test_a_run_still_going_ends_now_and_a_first_release_has_no_stable() -> None:
    tasks = [TaskRecord("deploy", "success", T0, T0 + 1), TaskRecord("wait_ready", "running", T0 + 1, None)]
    t = build_timeline(tasks, {"deploy": {"service": "g_blue", "previous": None, "group": "g"}},
                       now=T0 + 30, run_state="running")
    assert t["outcome"] == "in progress"
    assert t["stable"] is None
    assert t["weights"] == {"t": [T0, T0 + 30], "candidate": [0, 0], "stable": [None, None]}


def fake_with_members() -> FakePlatform:
    fake = FakePlatform()
    fake.add_member("fraud_blue", "fraud", weight=0)
    fake.add_member("fraud_green", "fraud", weight=100)
    return fake


def points(t: list[float]) -> dict[str, list]:
    n = len(t)
    return {"t": t, "requests": [10] * n, "errors": [0] * n, "rps": [1.0] * n, "error_rate": [0.0] * n,
            "p50_ms": [5.0] * n, "p95_ms": [8.0] * n, "p99_ms": [float(i) for i in range(n)]}


def test_the_members_points_within_the_run_come_from_the_platform() -> None:
    fake = fake_with_members()
    fake.series_values["fraud_green"] = Series("fraud_green", 900, 10, points([T0 - 100, T0 - 20, T0 + 10, T0 + 600]))
    t = build_timeline(*canary("promote"), now=T0 + 500, run_state="success")
    add_member_series(t, lambda: fake, source="eas_default", now=T0 + 500)
    assert t["metrics_note"] == ""
    # 30 s of margin either side of the run (T0 .. T0 + 460); only the columns the charts draw
    assert t["metrics"]["candidate"] == {"t": [T0 - 20, T0 + 10], "error_rate": [0.0, 0.0], "p99_ms": [1.0, 2.0],
                                         "rps": [1.0, 1.0]}
    assert t["metrics"]["stable"] == {"t": [], "error_rate": [], "p99_ms": [], "rps": []}


def test_the_smallest_window_that_covers_the_run() -> None:
    assert [series_window(s) for s in (60, 900, 901, 3600, 3601, 86400)] == ["15m", "15m", "1h", "1h", "24h", "24h"]
    assert series_window(86401) is None


def test_no_points_and_why() -> None:
    def unused() -> FakePlatform:
        raise AssertionError("the platform is not asked")

    old = build_timeline(*canary("promote"), now=T0 + 90000, run_state="success")
    add_member_series(old, unused, source="eas_default", now=T0 + 90000)
    assert (old["metrics"], old["metrics_note"]) == ({}, "the platform keeps 24 h of points: this run is older")

    nothing = build_timeline([TaskRecord("acquire_lease", "failed", T0, T0 + 1)], {}, now=T0 + 5, run_state="failed")
    add_member_series(nothing, unused, source="eas_default", now=T0 + 5)
    assert nothing["metrics_note"] == "this run deployed nothing: no rollout to draw"

    def unreachable() -> FakePlatform:
        raise PlatformUnavailable("cannot reach eas server at http://127.0.0.1:1: connection refused")

    t = build_timeline(*canary("promote"), now=T0 + 500, run_state="success")
    add_member_series(t, unreachable, source="eas_prod", now=T0 + 500)
    assert t["metrics"] == {}
    assert t["metrics_note"] == "no metrics from eas_prod: cannot reach eas server at http://127.0.0.1:1: " \
                                "connection refused"

    fake = fake_with_members()
    fake.services.pop("fraud_blue")  # deleted since the run: the candidate is still drawn
    t = build_timeline(*canary("promote"), now=T0 + 500, run_state="success")
    add_member_series(t, lambda: fake, source="eas_default", now=T0 + 500)
    assert list(t["metrics"]) == ["candidate"]
    assert t["metrics_note"] == "no metrics from eas_default: service fraud_blue not found"
