"""Shared fixtures: a real `eas server` (control plane + HAProxy) per test session."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from airflow_eas.errors import NotFound
from airflow_eas.server.embedded import EmbeddedServer, start_embedded

APPS = Path(__file__).parent / "apps"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("haproxy") is None:
        skip = pytest.mark.skip(reason="haproxy is not installed (make test installs it with apt-get)")
        for item in items:
            if "eas_server" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def eas_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = start_embedded(tmp_path_factory.mktemp("eas"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def eas_server(eas_session: EmbeddedServer) -> Iterator[EmbeddedServer]:
    """The session's server, left as the test found it: what the test created is deleted, pass or fail."""
    with deleting_new_services(eas_session) as server:
        yield server


@contextmanager
def deleting_new_services(server: EmbeddedServer, timeout: float = 60) -> Iterator[EmbeddedServer]:
    """Deletes every service created inside the block, also when the block fails (a session-wide server
    must not carry one test's leftovers into the next)."""
    before = {s.name for s in server.client.list()}
    try:
        yield server
    finally:
        created = [s.name for s in server.client.list() if s.name not in before]
        for name in created:
            with suppress(NotFound):
                server.client.delete(name)
        wait_until(lambda: not any(s.name in created for s in server.client.list()), timeout,
                   f"the services the test created ({', '.join(created)}) to be deleted")


def echo_spec(name: str, *, instances: int = 1, group: str | None = None, **env: str) -> dict:
    """An image-style service running tests/apps/echo_app.py (the process runtime runs `command`)."""
    metadata: dict = {"instance": instances}
    if group:
        metadata["group"] = group
    return {
        "name": name,
        "containers": [{
            "image": "local",
            "command": f"{sys.executable} {APPS / 'echo_app.py'}",
            "port": 8000,
            "env": [{"name": k, "value": str(v)} for k, v in env.items()],
        }],
        "metadata": metadata,
    }


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """``airflow db migrate`` into the session's AIRFLOW_HOME (SQLite; set when tests/provider/conftest.py is
    imported). Defined here, once: a copy in each folder that runs Airflow would migrate once per folder."""
    import subprocess

    from tests.provider.conftest import AIRFLOW_HOME

    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=120)
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3-compatible object store (moto_server) on 127.0.0.1; yields the server's EAS_OSS_* env."""
    import subprocess

    import requests

    from airflow_eas.server.embedded import free_port

    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        pytest.skip("moto_server is not installed (pip install -e '.[dev]' brings moto[server])")
    port = free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500
        except requests.RequestException:
            return proc.poll() is not None  # exited: stop waiting, fail below

    wait_until(answers, 30, "moto_server to answer")
    assert proc.poll() is None, "moto_server exited at start"
    yield {"EAS_OSS_ENDPOINT": f"http://127.0.0.1:{port}", "EAS_OSS_ACCESS_KEY_ID": "test-key-id",
           "EAS_OSS_ACCESS_KEY_SECRET": "test-secret-0123456789"}
    proc.terminate()
    proc.wait(10)


def wait_running(client, name: str, instances: int | None = None, timeout: float = 60):
    """Until service ``name`` is Running with ``instances`` serving instances (default: all it wants)."""

    def check():
        info = client.describe(name)
        want = info.instances if instances is None else instances
        done = info.status == "Running" and info.running_instances == want and len(info.instance_list) == want
        return info if done else None

    return wait_until(check, timeout, f"{name} to run {instances if instances is not None else 'all its'} instance(s)")


@pytest.fixture(scope="session")
def iris_data():
    np = pytest.importorskip("numpy")
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_iris(return_X_y=True)
    return np.asarray(X, dtype=np.float32), y


@pytest.fixture(scope="session")
def sklearn_model(tmp_path_factory, iris_data):
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data
    path = tmp_path_factory.mktemp("sk") / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    return path
