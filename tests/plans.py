"""The one way tests build a rollout plan: :func:`rollout_plan` (a fast canary of the echo app).

A test changes only what it is about (``rollout_plan("d", "g", bake_seconds=10)``) and
writes or runs it as users do (:func:`airflow_eas.plan.write_dag_file`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ECHO_APP = Path(__file__).resolve().parent / "apps" / "echo_app.py"


def echo_service(**env: str) -> dict[str, Any]:
    """A plan's service spec (no name, no group) running tests/apps/echo_app.py; values may be templates."""
    return {
        "containers": [
            {
                "image": "local",
                "command": f"{sys.executable} {ECHO_APP}",
                "port": 8000,
                "env": [{"name": k, "value": v} for k, v in env.items()],
            }
        ],
        "metadata": {"instance": 1},
    }


def rollout_plan(dag_id: str, group: str, **overrides: Any) -> dict[str, Any]:
    """A fast plan for tests: short bake, small window, short scale-down delay."""
    plan: dict[str, Any] = {
        "dag_id": dag_id,
        "group": group,
        "service": echo_service(APP_VERSION="{{ params.version }}"),
        "params": {"version": "2"},
        "warmup": {"data": [{"instances": [[1, 2]]}], "count": 2},
        "strategy": "canary",
        "steps": [50, 100],
        "bake_seconds": 2,
        "analysis": {
            "window_seconds": 4,
            "min_requests": 15,
            "max_error_rate": 0.05,
            "timeout_seconds": 30,
            "poll_seconds": 1,
        },
        "scale_down_delay_seconds": 1,
        "timeouts": {"ready_seconds": 30},
        "retries": 0,
    }
    plan.update(overrides)
    return plan
