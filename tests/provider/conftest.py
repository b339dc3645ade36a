"""Airflow fixtures: a fresh AIRFLOW_HOME (SQLite metadata DB) per test session.

The environment is set when this file is imported, before any test module imports
Airflow (its configuration is read once, at import).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakePlatform

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


@pytest.fixture(scope="session")
def eas_conn(eas_session) -> Iterator[Any]:
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


def run_plan(plan: dict[str, Any], conf: dict[str, Any] | None = None, **test_kwargs: Any):
    """Write the plan as users do (YAML + DAG file in the DAGs folder) and run it with ``dag.test()``."""
    from airflow_eas.demo import load_dag
    from airflow_eas.plan import write_dag_file

    dag = load_dag(write_dag_file(DAGS_FOLDER, plan))
    return dag.test(run_conf=conf or {}, **test_kwargs)


def task_states(run) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def task_start(run, task_id: str) -> float:
    """When a task of the run started (Unix time)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        return ti.start_date.timestamp()


@pytest.fixture
def fake_platform(monkeypatch: pytest.MonkeyPatch) -> FakePlatform:
    """Every EAS operator and sensor built in the test talks to one in-memory platform."""
    from airflow_eas.hooks.eas import EasHook

    platform = FakePlatform()
    monkeypatch.setattr(EasHook, "get_platform", lambda _: platform)
    return platform


class RecordingTaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def task_context(**extra: Any) -> dict[str, Any]:
    """What ``execute`` needs of an Airflow context, for operators run outside a DAG run."""
    from types import SimpleNamespace

    return {"ti": RecordingTaskInstance(), "dag": SimpleNamespace(dag_id="dag"), "run_id": "run", **extra}
