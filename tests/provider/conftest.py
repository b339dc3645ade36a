"""Airflow fixtures: a fresh AIRFLOW_HOME (SQLite metadata DB) per test session.

The environment is set when this file is imported, before any test module imports
Airflow (its configuration is read once, at import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-eas-test-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
ECHO_APP = Path(__file__).resolve().parent.parent / "apps" / "echo_app.py"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """``airflow db migrate`` into the session's AIRFLOW_HOME (SQLite)."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=120)
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def eas_conn(eas_session) -> Iterator[Any]:  # noqa: ANN001 - tests/conftest.py's EmbeddedServer
    """The ``eas_default`` connection, pointing at the session's eas server."""
    conn = {
        "conn_type": "eas",
        "host": "127.0.0.1",
        "port": eas_session.api_port,
        "password": eas_session.token,
    }
    os.environ["AIRFLOW_CONN_EAS_DEFAULT"] = json.dumps(conn)
    yield eas_session
    os.environ.pop("AIRFLOW_CONN_EAS_DEFAULT", None)


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


def run_plan(plan: dict[str, Any], conf: dict[str, Any] | None = None, **test_kwargs: Any):  # noqa: ANN201
    """Write the plan as users do (YAML + DAG file in the DAGs folder) and run it with ``dag.test()``."""
    from airflow_eas.demo import load_dag, write_dag_file

    dag = load_dag(write_dag_file(DAGS_FOLDER, plan))
    return dag.test(run_conf=conf or {}, **test_kwargs)


def task_states(run) -> dict[str, str]:  # noqa: ANN001
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def task_start(run, task_id: str) -> float:  # noqa: ANN001
    """When a task of the run started (Unix time)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        )
        return ti.start_date.timestamp()
