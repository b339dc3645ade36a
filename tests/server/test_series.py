"""The time series store: 10-second points, 24 h kept, a bounded file; the sampler's periods."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from airflow_eas.errors import InvalidSpec
from airflow_eas.server.metrics import MetricsCollector
from airflow_eas.server.runtimes.process import ProcessRuntime
from airflow_eas.server.series import RETENTION_SECONDS, STEP, SeriesSampler, SeriesStore, TrafficPoint, UsagePoint
from airflow_eas.server.store import Store


def point(key: str, requests: float = 10, errors: float = 0, p99: float = 20) -> TrafficPoint:
    return TrafficPoint(key, requests, errors, 5.0, 10.0, p99)


@pytest.fixture
def series(tmp_path: Path) -> SeriesStore:
    s = SeriesStore(tmp_path / "series.db")
    yield s
    s.close()


def test_points_come_back_as_columns_per_10_seconds(series: SeriesStore) -> None:
    t0 = 1_800_000_000
    for i in range(6):
        series.add(t0 + i * STEP, [point("a", requests=10 * (i + 1), errors=i)], [])
    out = series.series("a", "15m", now=t0 + 5 * STEP)
    assert out["step_seconds"] == 10
    assert out["window_seconds"] == 900
    cols = out["points"]
    assert cols["t"] == [t0 + i * STEP for i in range(6)]
    assert cols["requests"] == [10, 20, 30, 40, 50, 60]
    assert cols["rps"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert cols["error_rate"][2] == pytest.approx(2 / 30, abs=1e-4)
    assert cols["p99_ms"] == [20.0] * 6


def test_24h_window_merges_into_minutes_keeping_the_worst_percentile(series: SeriesStore) -> None:
    t0 = 1_800_000_020  # not on a minute: the first minute has 4 points, the next 6
    for i in range(10):
        series.add(t0 + i * STEP, [point("a", requests=6, errors=1, p99=100 if i == 7 else 20)], [])
    out = series.series("a", "24h", now=t0 + 9 * STEP)
    cols = out["points"]
    assert out["step_seconds"] == 60
    assert sum(cols["requests"]) == 60
    assert sum(cols["errors"]) == 10
    assert max(cols["p99_ms"]) == 100.0  # the spike is not averaged away
    assert all(t % 60 == 0 for t in cols["t"])


def test_points_older_than_24h_go(series: SeriesStore) -> None:
    t0 = 1_800_000_000
    series.add(t0, [point("a")], [UsagePoint("a", "a-1", 5.0, 2**20)])
    series.add(t0 + RETENTION_SECONDS - STEP, [point("a")], [])
    assert series.rows("traffic") == 2
    assert series.rows("usage") == 1
    series.add(t0 + RETENTION_SECONDS, [point("a")], [])
    assert series.rows("traffic") == 2  # the first is exactly 24 h old now
    assert series.rows("usage") == 0
    assert series.series("a", "24h", now=t0 + RETENTION_SECONDS)["points"]["t"][0] > t0


def test_the_file_stays_bounded_whatever_the_number_of_services(tmp_path: Path) -> None:
    store = SeriesStore(tmp_path / "series.db", max_rows=500)
    t0 = 1_800_000_000
    for i in range(100):  # 100 periods of 20 services: 2000 points
        store.add(t0 + i * STEP, [point(f"svc{k}") for k in range(20)], [])
    assert store.rows("traffic") == 500
    newest = store.series("svc3", "15m", now=t0 + 99 * STEP)["points"]["t"]
    assert newest[-1] == t0 + 99 * STEP  # the oldest went, the newest stayed
    size_then = _checkpointed_size(tmp_path / "series.db")
    for i in range(100, 400):
        store.add(t0 + i * STEP, [point(f"svc{k}") for k in range(20)], [])
    assert store.rows("traffic") == 500
    assert _checkpointed_size(tmp_path / "series.db") <= size_then * 1.5  # free pages are reused
    store.close()


def _checkpointed_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(path)


def test_usage_per_instance(series: SeriesStore) -> None:
    t0 = 1_800_000_000
    for i in range(3):
        series.add(t0 + i * STEP, [], [UsagePoint("a", "a-1", 10.0 * i, (i + 1) * 2**20),
                                      UsagePoint("a", "a-2", 1.0, 2**20), UsagePoint("b", "b-1", 1, 1)])
    out = series.series("a", "15m", usage_of="a", now=t0 + 2 * STEP)["instances"]
    assert set(out) == {"a-1", "a-2"}
    assert out["a-1"]["cpu_percent"] == [0.0, 10.0, 20.0]
    assert out["a-1"]["memory_mb"] == [1.0, 2.0, 3.0]


def test_forget_drops_a_service_and_keeps_the_others(series: SeriesStore) -> None:
    t0 = 1_800_000_000
    series.add(t0, [point("a"), point("b")], [UsagePoint("a", "a-1", 1.0, 1), UsagePoint("b", "b-1", 1.0, 1)])
    series.forget("a")
    assert series.series("a", "15m", usage_of="a", now=t0) == {
        "name": "a", "window_seconds": 900, "step_seconds": 10, "instances": {},
        "points": {k: [] for k in ("t", "requests", "errors", "rps", "error_rate", "p50_ms", "p95_ms", "p99_ms")}}
    assert series.series("b", "15m", usage_of="b", now=t0)["points"]["t"] == [t0]


def test_bad_window_is_a_clear_error(series: SeriesStore) -> None:
    with pytest.raises(InvalidSpec, match="window: '2d' is not one of 15m, 1h, 24h"):
        series.series("a", "2d")


def test_sampler_takes_the_complete_period_before_its_boundary(tmp_path: Path) -> None:
    """Requests of t-10 .. t-1 are the point of t; a request in the running second t is the next one's."""
    store, series, metrics = Store(tmp_path / "state.db"), SeriesStore(tmp_path / "series.db"), MetricsCollector()
    try:
        store.insert_service("a", {"name": "a"}, 1, "tok", None)
        store.join_group("g", "a", "gtok")
        t = 1_800_000_000
        for second, ms, error in [(t - 11, 1, False), (t - 10, 10, False), (t - 5, 30, True), (t - 1, 50, False),
                                  (t, 99, False)]:
            metrics.record(("group:g", "a"), 500 if error else 200, ms, now=second)
        SeriesSampler(series, metrics, store, ProcessRuntime()).sample(t)
        a = series.series("a", "15m", now=t)["points"]
        assert a["t"] == [t]
        assert a["requests"] == [3]
        assert a["errors"] == [1]
        assert a["p99_ms"] == [50.0]
        assert series.series("group:g", "15m", now=t)["points"]["requests"] == [3]
    finally:
        metrics.close()
        series.close()


def test_process_usage_reads_cpu_and_memory_of_a_live_process(tmp_path: Path) -> None:
    """A busy process shows CPU and its memory; an idle one next to it shows (almost) no CPU."""
    import subprocess
    import sys

    from airflow_eas.server.runtimes.process import _start_time

    busy = subprocess.Popen([sys.executable, "-c", "x = bytearray(64 * 2**20)\nwhile True: pass"],
                            start_new_session=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    runtime = ProcessRuntime()
    try:
        time.sleep(0.5)
        handles = [f"{p.pid}:{_start_time(p.pid)}" for p in (busy, idle)]
        for handle in handles:
            runtime.usage(handle)  # CPU is measured between two calls
        time.sleep(2.0)
        used, rested = (runtime.usage(h) for h in handles)
        assert used is not None
        assert rested is not None
        assert used.memory_bytes > 64 * 2**20 > rested.memory_bytes
        assert used.cpu_percent > 5 > rested.cpu_percent  # a busy loop, even on a shared machine
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()
    assert runtime.usage(handles[0]) is None

def test_a_starved_sampler_catches_up_the_periods_it_missed(tmp_path: Path) -> None:
    """The thread wakes 35 s late: the three missed periods are taken from the collector, not lost."""
    store, series, metrics = Store(tmp_path / "state.db"), SeriesStore(tmp_path / "series.db"), MetricsCollector()
    t0 = (int(time.time()) // STEP) * STEP
    clock = iter([t0 + 4.0, t0 + 44.0, t0 + 50.0])  # first boundary t0+10; the next wake is 35 s late
    sampler = SeriesSampler(series, metrics, store, ProcessRuntime(), clock=lambda: next(clock))
    store.insert_service("a", {"name": "a"}, 1, "tok", None)
    for second in range(t0, t0 + 50):
        metrics.record(("a",), 200, 5, now=second)
    waits = []

    def fake_wait(seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) > 2

    sampler._stopped.wait = fake_wait  # type: ignore[method-assign]
    try:
        sampler._loop()
        assert series.series("a", "15m", now=t0 + 60)["points"]["t"] == [t0 + 10, t0 + 20, t0 + 30, t0 + 40, t0 + 50]
    finally:
        metrics.close()
        series.close()
