"""A real Airflow deployment for end-to-end tests: api-server, scheduler, dag-processor, triggerer.

Each component is its own ``airflow`` subprocess (its own process group) over a fresh
``AIRFLOW_HOME`` with a SQLite metadata database. Airflow 3 has no SequentialExecutor any
more: LocalExecutor is the default and works with SQLite (the scheduler serialises its
writes), so that is what runs the tasks. Everything listens on 127.0.0.1 only: the
api-server gets ``--host 127.0.0.1``, and the scheduler and triggerer run with
``--skip-serve-logs`` (their log servers would bind 0.0.0.0; the api-server reads the task
logs from the shared local log folder instead).

Authentication is Airflow 3's simple auth manager as a user meets it: user ``admin`` (role
admin), its password in the auth manager's password file (written here before start-up
instead of generated), and a JWT from ``POST /auth/token`` sent as a bearer token.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from airflow_eas.server.embedded import free_port

AIRFLOW = str(Path(sys.executable).parent / "airflow")
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1"],  # the port is added at start
    "dag-processor": ["dag-processor"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
START_TIMEOUT = 90.0


class ComponentsDidNotStart(Exception):
    """An Airflow component exited or never became healthy (the test is skipped, not failed)."""


class AirflowDeployment:
    """Airflow's components as subprocesses over one AIRFLOW_HOME, driven through the REST API."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.dags_folder = home / "dags"
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.logs = home / "component-logs"
        self.logs.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.username, self.password = "admin", secrets.token_urlsafe(12)
        self.processes: dict[str, subprocess.Popen] = {}
        self._session = requests.Session()
        self._stopped = False
        # The password file of the simple auth manager: {"user": "password"}
        passwords = home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({self.username: self.password}))
        # Whatever AIRFLOW_* the test process has (e.g. tests/provider's AIRFLOW_HOME) stays out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # HS512 wants >= 64 bytes
                # task workers reach the api-server's Execution API here
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                # fast enough for a test: new DAG files seen within seconds
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                # [workers] min_heartbeat_interval stays at Airflow's default (5 s) on purpose: the provider
                # itself must avoid the deferral race it causes (see MIN_DEFER_SECONDS).
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            }
        )
        env.update(extra_env or {})
        self.env = env

    # -- processes ---------------------------------------------------------------------------------

    def start(self) -> AirflowDeployment:
        """``airflow db migrate``, then every component; returns once /monitor/health says all are healthy."""
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=120
        )
        if migrate.returncode != 0:
            raise ComponentsDidNotStart(f"airflow db migrate failed: {migrate.stderr[-2000:]}")
        for name, args in COMPONENTS.items():
            cmd = [AIRFLOW, *args] + (["--port", str(self.port)] if name == "api-server" else [])
            with open(self.logs / f"{name}.log", "wb") as log:
                self.processes[name] = subprocess.Popen(
                    cmd,
                    env=self.env,
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped as one
                )
        self._wait_healthy(START_TIMEOUT)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise ComponentsDidNotStart(
                        f"airflow {name} exited with code {proc.returncode}: {self.log_tail(name)}"
                    )
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).json()
            except (requests.RequestException, ValueError):
                health = None
            if health and all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ):
                return
            time.sleep(0.5)
        raise ComponentsDidNotStart(f"Airflow not healthy after {timeout:.0f} s: {health}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM each component (it shuts its own children down), then SIGKILL whatever is left of its
        process group and of its descendants (task processes make groups of their own) after ``timeout``."""
        if self._stopped:
            return
        self._stopped = True
        victims: list[psutil.Process] = []
        for name in ("scheduler", "triggerer", "dag-processor", "api-server"):
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                continue
            try:
                leader = psutil.Process(proc.pid)
                victims += [leader, *leader.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(victims, timeout=timeout)
        for proc in self.processes.values():
            _signal_group(proc.pid, signal.SIGKILL)
        for victim in alive:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for proc in self.processes.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def processes_alive(self) -> list[psutil.Process]:
        """Every live process of this deployment: the components and all their descendants."""
        out: list[psutil.Process] = []
        for proc in self.processes.values():
            try:
                leader = psutil.Process(proc.pid)
                out += [leader, *leader.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return out

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def problems(self) -> str:
        """The lines of the scheduler's and triggerer's logs that explain a failed run."""
        lines = []
        for name in ("scheduler", "triggerer"):
            for line in self.log(name).splitlines():
                if any(w in line for w in ("[error", "[warning", "state mismatch", "Marking task as")):
                    lines.append(f"{name}: {line[:400]}")
        return "\n".join(lines[-30:])

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    # -- REST API ----------------------------------------------------------------------------------

    def login(self) -> None:
        """A JWT from the simple auth manager (``POST /auth/token``), sent as a bearer token from now on."""
        resp = requests.post(
            f"{self.url}/auth/token", json={"username": self.username, "password": self.password}, timeout=10
        )
        assert resp.status_code == 201, resp.text
        self._session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        resp = self._session.request(method, f"{self.url}/api/v2{path}", timeout=15, **kwargs)
        wanted = (expect,) if isinstance(expect, int) else expect
        assert resp.status_code in wanted, f"{method} {path}: HTTP {resp.status_code} {resp.text[:500]}"
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Until the dag-processor has parsed and serialized ``dag_id`` (import errors fail at once)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self._session.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=10)
            if resp.status_code == 200:
                return resp.json()
            errors = self.api("GET", "/importErrors")["import_errors"]
            assert not errors, f"DAG import errors: {errors}"
            time.sleep(0.5)
        raise AssertionError(f"DAG {dag_id} not parsed after {timeout:.0f} s: {self.log_tail('dag-processor')}")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def airflow_deployment(tmp_path_factory: pytest.TempPathFactory, eas_server) -> Iterator[AirflowDeployment]:
    """A not yet started deployment whose ``eas_default`` connection points at the session's eas server.

    Write DAG files into ``.dags_folder``, then call ``.start()``; every process is stopped afterwards.
    """
    conn = {"conn_type": "eas", "host": "127.0.0.1", "port": eas_server.api_port, "password": eas_server.token}
    deployment = AirflowDeployment(
        tmp_path_factory.mktemp("airflow-e2e"), {"AIRFLOW_CONN_EAS_DEFAULT": json.dumps(conn)}
    )
    try:
        yield deployment
    finally:
        deployment.stop()
