"""A rollout run as a timeline: weights over time, verdicts, promotion or rollback.

Airflow-free, so it is tested without a metadata database: the plugin reads the run's
task instances and their XComs and hands them here as plain records. What the rollout
operators return is what this reads (see :func:`airflow_eas.dags.build_rollout_dag`):

- ``deploy``: ``{"service", "previous", "group", "version", ...}`` (candidate and stable)
- ``shift_to_<w>``: the group's weights after the step, ``{member: weight}``
- ``analysis_<w>``: on a pass, the sensor's event ``{"status", "message", "verdict": {...}}``;
  a failed analysis raises, so its verdict is the task's state
- ``promote``: ``{"service", "scaled_down"}``; ``rollback``: ``{"service", "previous", "weights"}``

Weights change when a shift or a rollback ends and when a promotion starts (it sets the
traffic first, then waits to scale the old member down).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_eas.errors import EasError
from airflow_eas.platform.base import SERIES_WINDOWS, Platform, Series

SHIFT = re.compile(r"^shift_to_(\d+)$")
ANALYSIS = re.compile(r"^analysis_(\d+)$")
DONE_STATES = {"success", "failed", "skipped", "upstream_failed"}


@dataclass
class TaskRecord:
    task_id: str
    state: str | None
    start: float | None  # Unix time
    end: float | None


def build_timeline(
    tasks: list[TaskRecord], xcoms: dict[str, Any], *, now: float, run_state: str | None = None
) -> dict[str, Any]:
    """The rollout view's data: ``weights`` (columns), ``markers``, ``verdicts``, ``thresholds``."""
    by_id = {t.task_id: t for t in tasks}
    deploy = xcoms.get("deploy") if isinstance(xcoms.get("deploy"), dict) else {}
    candidate, stable = deploy.get("service"), deploy.get("previous") or None
    starts = [t.start for t in tasks if t.start]
    start = min(starts) if starts else now
    ends = [t.end for t in tasks if t.end]
    end = max(ends) if run_state in DONE_STATES | {"success", "failed"} and ends else now

    changes: list[tuple[float, dict[str, int]]] = []
    markers: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    thresholds: dict[str, Any] = {}
    for task in sorted(tasks, key=lambda t: (t.end or t.start or now)):
        value = xcoms.get(task.task_id)
        if SHIFT.match(task.task_id) and task.state == "success" and isinstance(value, dict):
            changes.append((task.end or now, {k: int(v) for k, v in value.items()}))
            weight = SHIFT.match(task.task_id)[1]
            markers.append(_marker(task.end, "shift", f"{candidate} to {weight}%", True, f"→{weight}%"))
        elif ANALYSIS.match(task.task_id) and task.state in ("success", "failed"):
            verdict = (value or {}).get("verdict") if isinstance(value, dict) else None
            step = int(ANALYSIS.match(task.task_id)[1])
            ok = task.state == "success"
            entry = {"task_id": task.task_id, "step": step, "t": task.end, "passed": ok,
                     "result": (verdict or {}).get("result", "Successful" if ok else "Failed"),
                     "reasons": (verdict or {}).get("reasons", [] if ok else ["the analysis failed (see its log)"]),
                     "candidate": (verdict or {}).get("candidate"), "baseline": (verdict or {}).get("baseline")}
            thresholds = (verdict or {}).get("thresholds") or thresholds
            verdicts.append(entry)
            markers.append(_marker(task.end, "verdict", f"analysis at {step}%: {entry['result']}", ok,
                                   f"{'✓' if ok else '✗'} {step}%"))
        elif task.task_id == "promote" and task.state in ("success", "running", "deferred") and candidate:
            weights = {candidate: 100, **({stable: 0} if stable else {})}
            changes.append((task.start or now, weights))
            markers.append(_marker(task.start, "promote", f"promoted {candidate}", True, "promoted"))
        elif task.task_id == "rollback" and task.state == "success" and isinstance(value, dict):
            changes.append((task.end or now, {k: int(v) for k, v in (value.get("weights") or {}).items()}))
            markers.append(_marker(task.end, "rollback", f"rolled back to {value.get('previous') or '-'}", False,
                                   "rolled back"))
        elif task.state == "failed" and task.task_id not in ("rollout_failed",):
            markers.append(_marker(task.end, "failure", f"{task.task_id} failed", False, f"✗ {task.task_id}"))

    return {
        "candidate": candidate, "stable": stable, "group": deploy.get("group"), "version": deploy.get("version"),
        "start": start, "end": end, "state": run_state,
        "weights": _weight_columns(candidate, stable, changes, start, end),
        "markers": [m for m in markers if m["t"] is not None],
        "verdicts": verdicts,
        "thresholds": thresholds,
        "tasks": [{"task_id": t.task_id, "state": t.state, "start": t.start, "end": t.end}
                  for t in sorted(tasks, key=lambda t: (t.start or now, t.task_id))],
        "outcome": _outcome(by_id),
    }


def _marker(t: float | None, kind: str, label: str, ok: bool, tag: str = "") -> dict[str, Any]:
    """``label`` for the tables, ``tag`` (a few characters) beside the mark on a chart."""
    return {"t": t, "kind": kind, "label": label, "ok": ok, "tag": tag or label}


def _weight_columns(candidate: str | None, stable: str | None, changes: list[tuple[float, dict[str, int]]],
                    start: float, end: float) -> dict[str, list]:
    """A step line per member: the weight from each change until the next."""
    current = {candidate: 0, **({stable: 100} if stable else {})} if candidate else {}
    cols: dict[str, list] = {"t": [start], "candidate": [current.get(candidate, 0)],
                             "stable": [current.get(stable, 0) if stable else None]}
    for t, weights in sorted(changes, key=lambda c: c[0]):
        current.update(weights)
        cols["t"].append(t)
        cols["candidate"].append(current.get(candidate, 0))
        cols["stable"].append(current.get(stable, 0) if stable else None)
    if end > cols["t"][-1]:
        cols["t"].append(end)
        cols["candidate"].append(cols["candidate"][-1])
        cols["stable"].append(cols["stable"][-1])
    return cols


def _outcome(tasks: dict[str, TaskRecord]) -> str:
    def state(task_id: str) -> str | None:
        return tasks[task_id].state if task_id in tasks else None

    if state("rollback") == "success":
        return "rolled back"
    if state("promote") == "success":
        return "promoted"
    if state("promote") in ("running", "deferred"):
        return "promoted, old member still up"
    if any(t.state in ("running", "deferred", "queued", "scheduled", "up_for_retry") for t in tasks.values()):
        return "in progress"
    return "not started" if not any(t.state for t in tasks.values()) else "ended"


def add_member_series(timeline: dict[str, Any], platform_of: Callable[[], Platform], *, source: str,
                      now: float) -> None:
    """Add the candidate's and the stable member's points within the run (``metrics``), or why there
    are none (``metrics_note``): a run that deployed nothing, one older than the points kept, or a
    platform that did not answer (``source`` names it, e.g. the connection)."""
    timeline.update(metrics={}, metrics_note="")
    members = {role: timeline[role] for role in ("candidate", "stable") if timeline[role]}
    window = series_window(now - timeline["start"] + 60)
    if not members:
        timeline["metrics_note"] = "this run deployed nothing: no rollout to draw"
    elif window is None:
        timeline["metrics_note"] = "the platform keeps 24 h of points: this run is older"
    else:
        try:
            platform = platform_of()
            for role, name in members.items():
                timeline["metrics"][role] = clip_series(platform.series(name, window), timeline["start"],
                                                        timeline["end"])
        except EasError as exc:
            timeline["metrics_note"] = f"no metrics from {source}: {exc.message}"


def series_window(seconds: float) -> str | None:
    """The smallest window of the platform's points that covers ``seconds`` (None: more than it keeps)."""
    for name, limit in SERIES_WINDOWS.items():
        if seconds <= limit:
            return name
    return None


def clip_series(series: Series, start: float, end: float) -> dict[str, list]:
    """A member's points within the run, with a little margin either side."""
    cols = series.points
    keep = [i for i, t in enumerate(cols["t"]) if start - 30 <= t <= end + 30]
    return {k: [cols[k][i] for i in keep] for k in ("t", "error_rate", "p99_ms", "rps")}
