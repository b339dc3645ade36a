"""Time series of ``eas server``: 10-second points kept for 24 hours, for charts.

The metrics collector only remembers the last 15 minutes, one-second buckets in memory.
Every :data:`STEP` seconds a sampler thread (beside the reconciler, never in it) folds the
last complete 10 seconds of each service, group member and group into one point
(requests, errors, p50/p95/p99) and reads each instance's CPU and memory from its runtime
(``Runtime.usage``: psutil for processes, ``docker stats`` for containers). Points go to
their own SQLite file in the data dir (``series.db``, apart from the state so that charts
never wait on the control loop's lock), pruned to :data:`RETENTION_SECONDS` and capped at
``max_rows`` per table: the file stays bounded however many services come and go.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_eas.errors import InvalidSpec
from airflow_eas.platform.base import SERIES_WINDOWS, TRAFFIC_COLUMNS, USAGE_COLUMNS, Series
from airflow_eas.server.metrics import MetricsCollector
from airflow_eas.server.runtimes.base import Runtime
from airflow_eas.server.store import Store

log = logging.getLogger("airflow_eas.server")

STEP = 10
RETENTION_SECONDS = 24 * 3600
MAX_ROWS = 500_000  # per table: ~40 MB; 57 keys at one point per 10 s for 24 h
LATE_SECONDS = 1.0  # the gateway's last log lines of a period arrive this late at most
MAX_CATCH_UP = 600  # seconds of missed periods taken late (the collector keeps 900)

SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    key TEXT NOT NULL, t INTEGER NOT NULL, requests REAL NOT NULL, errors REAL NOT NULL,
    p50 REAL, p95 REAL, p99 REAL, PRIMARY KEY (key, t));
CREATE TABLE IF NOT EXISTS usage (
    service TEXT NOT NULL, instance TEXT NOT NULL, t INTEGER NOT NULL, cpu REAL NOT NULL,
    memory INTEGER NOT NULL, PRIMARY KEY (service, instance, t));
CREATE INDEX IF NOT EXISTS traffic_t ON traffic (t);
CREATE INDEX IF NOT EXISTS usage_t ON usage (t);
"""


@dataclass
class TrafficPoint:
    key: str  # a service (its own route and its share of a group's) or ``group:<name>``
    requests: float
    errors: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass
class UsagePoint:
    service: str
    instance: str
    cpu_percent: float
    memory_bytes: int


def window_of(window: str | int) -> tuple[int, int]:
    """``15m``/``1h``/``24h`` (or seconds) -> (seconds, step of the points); a clear error otherwise."""
    if isinstance(window, str) and window in SERIES_WINDOWS:
        seconds = SERIES_WINDOWS[window]
    else:
        try:
            seconds = int(window)
        except (TypeError, ValueError):
            raise InvalidSpec(
                f"window: {window!r} is not one of {', '.join(SERIES_WINDOWS)} (or a number of seconds)"
            ) from None
        if not STEP <= seconds <= RETENTION_SECONDS:
            raise InvalidSpec(f"window: {seconds} s is outside {STEP} s to {RETENTION_SECONDS} s (24 h)")
    return seconds, STEP if seconds <= 3600 else 60  # 24 h in minutes keeps a chart's payload small


class SeriesStore:
    """The points on disk. Thread-safe: one connection behind one lock."""

    def __init__(self, path: Path, *, retention: int = RETENTION_SECONDS, max_rows: int = MAX_ROWS) -> None:
        self.retention, self.max_rows = retention, max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA journal_size_limit={4 * 2**20}")  # the WAL is bounded too
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, t: int, traffic: Iterable[TrafficPoint], usage: Iterable[UsagePoint]) -> None:
        """One period's points (``t``: the end of the period), then what is too old or too many goes."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO traffic VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(p.key, t, p.requests, p.errors, p.p50_ms, p.p95_ms, p.p99_ms) for p in traffic],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO usage VALUES (?, ?, ?, ?, ?)",
                [(u.service, u.instance, t, u.cpu_percent, u.memory_bytes) for u in usage],
            )
            for table in ("traffic", "usage"):
                self._db.execute(f"DELETE FROM {table} WHERE t <= ?", (t - self.retention,))
                (rows,) = self._db.execute(f"SELECT count(*) FROM {table}").fetchone()
                if rows > self.max_rows:  # the oldest go first, whoever they belong to
                    self._db.execute(
                        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY t LIMIT ?)",
                        (rows - self.max_rows,),
                    )
            self._db.execute("COMMIT")

    def forget(self, service: str) -> None:
        """A new service of an old name starts with empty charts."""
        with self._lock:
            self._db.execute("DELETE FROM traffic WHERE key=?", (service,))
            self._db.execute("DELETE FROM usage WHERE service=?", (service,))

    def rows(self, table: str) -> int:
        with self._lock:
            return self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def traffic(self, key: str, since: int, until: int, step: int = STEP) -> dict[str, list]:
        """Columns ``t, requests, errors, rps, error_rate, p50_ms, p95_ms, p99_ms`` over ``(since, until]``.

        Where ``step`` is coarser than the points, requests and errors add up and each
        percentile is the highest of the merged points (a chart should not hide a spike).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT ((t + ? - 1) / ?) * ? AS s, sum(requests), sum(errors), max(p50), max(p95), max(p99)"
                " FROM traffic WHERE key=? AND t > ? AND t <= ? GROUP BY s ORDER BY s",
                (step, step, step, key, since, until),
            ).fetchall()
        out: dict[str, list] = {c: [] for c in TRAFFIC_COLUMNS}
        for s, requests, errors, p50, p95, p99 in rows:
            out["t"].append(s)
            out["requests"].append(round(requests))
            out["errors"].append(round(errors))
            out["rps"].append(round(requests / step, 3))
            out["error_rate"].append(round(errors / requests, 4) if requests else None)
            out["p50_ms"].append(p50)
            out["p95_ms"].append(p95)
            out["p99_ms"].append(p99)
        return out

    def usage(self, service: str, since: int, until: int, step: int = STEP) -> dict[str, dict[str, list]]:
        """Per instance: columns ``t, cpu_percent, memory_mb`` (mean CPU, highest memory per step)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT instance, ((t + ? - 1) / ?) * ? AS s, avg(cpu), max(memory) FROM usage"
                " WHERE service=? AND t > ? AND t <= ? GROUP BY instance, s ORDER BY instance, s",
                (step, step, step, service, since, until),
            ).fetchall()
        out: dict[str, dict[str, list]] = {}
        for instance, s, cpu, memory in rows:
            cols = out.setdefault(instance, {c: [] for c in USAGE_COLUMNS})
            cols["t"].append(s)
            cols["cpu_percent"].append(round(cpu, 1))
            cols["memory_mb"].append(round(memory / 2**20, 1))
        return out

    def series(self, key: str, window: str | int, *, usage_of: str | None = None,
               now: float | None = None) -> dict[str, Any]:
        """The answer of ``GET /api/v2/services/{name}/series``: traffic columns and, per instance, usage."""
        seconds, step = window_of(window)
        until = int(now if now is not None else time.time())
        since = until - seconds
        return Series(
            name=key, window_seconds=seconds, step_seconds=step, points=self.traffic(key, since, until, step),
            instances=self.usage(usage_of, since, until, step) if usage_of else {},
        ).to_dict()


class SeriesSampler:
    """Takes one point per :data:`STEP` seconds, on a thread of its own, until stopped."""

    def __init__(self, series: SeriesStore, metrics: MetricsCollector, store: Store, runtime: Runtime,
                 clock: Callable[[], float] = time.time) -> None:
        self.series, self.metrics, self.store, self.runtime = series, metrics, store, runtime
        self.clock = clock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eas-series", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        last = None
        while True:
            now = self.clock()
            boundary = (int(now) // STEP + 1) * STEP
            if self._stopped.wait(boundary + LATE_SECONDS - now):
                return
            # A starved thread (a busy host) catches up: the collector still holds the periods it missed.
            missed = range(last + STEP, boundary, STEP) if last and boundary - last <= MAX_CATCH_UP else ()
            try:
                for t in missed:
                    self.sample(t, usage=False)
                self.sample(boundary)
                last = boundary
            except Exception:  # a chart may miss a point; the sampler must go on
                log.exception("time series sample failed")

    def sample(self, t: int, *, usage: bool = True) -> None:
        """The point of the period ``[t - STEP, t)`` for every service and group, and (``usage``) CPU and
        memory now."""
        keys = [s.name for s in self.store.services()] + [f"group:{g}" for g, _ in self.store.groups()]
        traffic = []
        for key in keys:
            w = self.metrics.window(key, STEP, now=t - 1)  # the seconds t-10 .. t-1, all complete
            traffic.append(TrafficPoint(key, w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms))
        used_now = []
        for inst in self.store.instances() if usage else ():
            if not inst.handle:
                continue
            used = self.runtime.usage(inst.handle)
            if used is not None:
                used_now.append(UsagePoint(inst.service, inst.id, used.cpu_percent, used.memory_bytes))
        self.series.add(t, traffic, used_now)
