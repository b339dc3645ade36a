"""Fixtures: one emulated API server per session, a fresh namespace's worth of state per test."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# The provider tests' fresh AIRFLOW_HOME, set on import (airflow_db, in tests/conftest.py, migrates it).
import tests.provider.conftest  # noqa: F401
from tests.platform.kubernetes.emulator import Cluster, Controllers
from tests.platform.kubernetes.prometheus import Exporter, Prometheus


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster().start()
    yield c
    c.stop()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    # One namespace per test: the emulator's objects outlive a test, a namespace keeps them apart.
    return "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")


@pytest.fixture
def kube_conn(
    cluster: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """An Airflow ``kubernetes`` connection (kubeconfig path + namespace + our extras) to the emulator.

    Tests that also ask for ``prometheus`` get its URL on the connection.
    """
    kubeconfig = cluster.kubeconfig(tmp_path, namespace)
    conn = {
        "conn_type": "kubernetes",
        "extra": {
            "kube_config_path": str(kubeconfig),
            "namespace": namespace,
            "gateway_name": "eg",
            "gateway_namespace": "gateways",
            "gateway_address": "http://127.0.0.1:9",
            "model_server_image": "registry.example.com/eas/model-server:1.0",
        },
    }
    if "prometheus" in request.fixturenames:
        conn["extra"]["prometheus_url"] = request.getfixturevalue("prometheus").url
    monkeypatch.setenv("AIRFLOW_CONN_K8S_TEST", json.dumps(conn))
    return "k8s_test"


@pytest.fixture
def controllers(cluster: Cluster, namespace: str, tmp_path: Path) -> Controllers:
    return Controllers(cluster.api(tmp_path), cluster, namespace=namespace)



@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


@pytest.fixture(scope="session")
def prometheus(exporter: Exporter) -> Iterator[Prometheus]:
    """A real Prometheus server scraping the exporter every second (skips where it cannot be installed)."""
    if not shutil.which("prometheus"):
        pytest.skip("prometheus is not installed: `apt-get install -y prometheus` (make system does it)")
    p = Prometheus(exporter.port).start()
    yield p
    p.stop()
