"""``make demo``: a scheduled blue/green model release through Airflow, end to end.

1. starts the embedded platform (``eas server`` with HAProxy) under ``.demo/``;
2. trains two tiny scikit-learn models (version 1 and version 2) on the spot;
3. deploys version 1 into group ``iris`` (its first rollout: all traffic once ready);
4. runs the nightly rollout DAG for version 2 through Airflow (fresh ``AIRFLOW_HOME``
   under ``.demo/``, ``airflow db migrate``, ``dag.test()``) while a client thread sends
   traffic to the group's endpoint;
5. prints the final weights, the client's requests and errors, and each step's timing.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
GROUP = "iris"


class TrafficDriver:
    """Sends prediction requests to a group (or service) endpoint at a steady rate in a thread.

    :param url: the endpoint, ``http://gateway/api/predict/<group>``
    :param token: the group's token (sent bare in ``Authorization``, as EAS does)
    :param body: the request body
    :param rps: requests per second
    """

    def __init__(self, url: str, token: str, body: bytes | str, *, rps: float = 20.0) -> None:
        self.url = url
        self.token = token
        self.body = body.encode() if isinstance(body, str) else body
        self.interval = 1.0 / rps
        self.statuses: collections.Counter[int] = collections.Counter()
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.failures_at: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.failures)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 400) + len(self.failures)

    def start(self) -> TrafficDriver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        # No proxy look-up per request: it iterates os.environ, which Airflow changes while a run goes on
        # ("dictionary changed size during iteration" killed this thread); the target is local anyway.
        session.trust_env = False
        session.headers["Authorization"] = self.token
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                resp = session.post(self.url, data=self.body, timeout=10)
                self.statuses[resp.status_code] += 1
                if resp.status_code >= 400:
                    self.failures_at.append((time.time(), f"HTTP {resp.status_code} {resp.text[:120]}"))
                self.answers[_answered_by(resp)] += 1
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
                self.failures_at.append((time.time(), type(exc).__name__))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def summary(self) -> str:
        return f"{self.requests} requests, {self.errors} errors, statuses {dict(self.statuses)}"


def _answered_by(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return "?"
    if isinstance(data, dict) and "version" in data:
        return f"version {data['version']}"
    return "?"


# -- the demo ------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _train_models(models: Path) -> dict[str, Path]:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    paths = {}
    for version, model in (
        ("v1", DecisionTreeClassifier(max_depth=2)),
        ("v2", LogisticRegression(max_iter=500)),
    ):
        model.fit(x, y)
        path = models / version / "model.joblib"
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, path)
        paths[version] = path
        _say(f"trained {version}: {type(model).__name__}, accuracy {model.score(x, y):.2f}")
    warmup = models / "warmup.jsonl"
    warmup.write_text("\n".join(json.dumps({"instances": [list(row)]}) for row in x[:5]) + "\n")
    return paths


def _plan(models: Path) -> dict[str, Any]:
    return {
        "dag_id": "iris_nightly_release",
        "group": GROUP,
        "schedule": {"cron": "0 2 * * *", "timezone": "Asia/Shanghai", "start_date": "2026-11-01"},
        "params": {"version": "v1"},
        "service": {
            "processor": "sklearn",
            "model_path": f"file://{models}/{{{{ params.version }}}}/model.joblib",
            "metadata": {"instance": 2},
        },
        "warmup": {"data_path": f"file://{models}/warmup.jsonl", "count": 2},
        "strategy": "canary",
        "steps": [25, 100],
        "bake_seconds": 3,
        "analysis": {
            "window_seconds": 10,
            "min_requests": 20,
            "max_error_rate": 0.01,
            "max_p99_ms": 500,
            "baseline_tolerance": 3.0,
            "timeout_seconds": 60,
            "poll_seconds": 1,
        },
        "scale_down_delay_seconds": 3,
        "timeouts": {"ready_seconds": 120},
        "retries": 0,
    }


def _airflow_env(home: Path, conn: dict[str, Any]) -> None:
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"  # the demo prints its own progress
    os.environ["AIRFLOW_CONN_EAS_DEFAULT"] = json.dumps(conn)


def load_dag(dag_file: Path):
    """Import a DAG file (from the DAGs folder) and return its ``dag``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"eas_dag_{dag_file.stem}_{time.monotonic_ns()}", dag_file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.dag


def _run_dag(home: Path, plan: dict[str, Any], conf: dict[str, Any]):
    from airflow_eas.plan import write_dag_file

    return load_dag(write_dag_file(home / "dags", plan)).test(run_conf=conf)


def main() -> int:
    from airflow_eas.server.embedded import start_embedded
    from airflow_eas.spec import parse_spec

    base = ROOT / ".demo"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    models = base / "models"
    _say("training two tiny scikit-learn models")
    _train_models(models)

    _say("starting the embedded platform (eas server + HAProxy)")
    server = start_embedded(base / "eas")
    try:
        client = server.client
        _say(f"control plane {server.endpoint}, gateway {server.gateway}")
        home = base / "airflow"
        home.mkdir()
        _airflow_env(
            home, {"conn_type": "eas", "host": "127.0.0.1", "port": server.api_port, "password": server.token}
        )
        started = time.monotonic()
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _say(f"airflow db migrate: {time.monotonic() - started:.1f} s")

        plan = _plan(models)
        _say("deploying version 1 as iris_blue and giving it all of group iris's traffic")
        started = time.monotonic()
        v1 = {
            "name": f"{GROUP}_blue",
            "processor": "sklearn",
            "model_path": f"file://{models}/v1/model.joblib",
            "metadata": {"instance": 2, "group": GROUP},
        }
        client.create(parse_spec(v1))
        _wait(lambda: client.describe(f"{GROUP}_blue").ready, 120, "iris_blue ready")
        client.set_traffic(GROUP, {f"{GROUP}_blue": 100})
        _say(f"version 1 serves after {time.monotonic() - started:.1f} s; group: {_weights(client)}")

        token = client.describe_group(GROUP).token
        body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
        traffic = TrafficDriver(f"{server.gateway}/api/predict/{GROUP}", token, body, rps=25).start()
        _say("client traffic started (25 requests/s to the group endpoint)")
        time.sleep(2)
        _say("rollout of version 2 through Airflow: deploy iris_green, warm up, canary 25% -> 100%, promote")
        run2 = _run_dag(home, plan, {"version": "v2"})
        time.sleep(1)
        traffic.stop()
        _print_summary(run2, client, traffic)
        return 0 if run2.state == "success" and traffic.errors == 0 else 1
    finally:
        server.stop()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def _weights(client: Any) -> str:
    info = client.describe_group(GROUP)
    return ", ".join(f"{m.service}={m.weight}%" for m in info.members)


def _print_summary(run: Any, client: Any, traffic: TrafficDriver) -> None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    print("\n=== summary ===")
    print(f"DAG run {run.run_id}: {run.state}")
    print(f"group {GROUP}: {_weights(client)}")
    print(f"client: {traffic.summary()}")
    for at, what in traffic.failures_at[:10]:
        stamp = time.strftime("%H:%M:%S", time.localtime(at))
        print(f"  client error at {stamp}.{int(at % 1 * 1000):03d}: {what}")
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        rows = sorted((ti for ti in tis if ti.start_date), key=lambda ti: ti.start_date)
        print("steps:")
        for ti in rows:
            took = (ti.end_date - ti.start_date).total_seconds() if ti.end_date else float("nan")
            print(f"  {ti.task_id:<16} {str(ti.state):<10} {took:6.1f} s  (from {ti.start_date:%H:%M:%S.%f})")


if __name__ == "__main__":
    sys.exit(main())
