"""Fixtures for the model-server tests: server processes and tiny models trained here."""

from __future__ import annotations

import pytest

from ._helpers import Served


@pytest.fixture
def serve(tmp_path):
    """``serve(spec, env=None, ready=True)`` starts a server (waiting for ready unless told not to)."""
    started: list[Served] = []

    def start(
        spec: dict, env: dict | None = None, ready: bool = True, execution: str | None = None
    ) -> Served:
        s = Served(spec, tmp_path, env, execution)
        started.append(s)
        if ready:
            s.wait_ready()
        return s

    yield start
    for s in started:
        s.stop()


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
