"""Fixtures: one emulated API server per session, a fresh namespace's worth of state per test."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


GROUP_RPS = 30.0


@pytest.fixture
def gateway_traffic(exporter: Exporter, controllers: Controllers) -> Iterator[Exporter]:
    """The gateway's telemetry: GROUP_RPS requests/s into each group, split by its HTTPRoute's current weights."""
    api, ns = controllers.api, controllers.namespace
    cache: dict[str, Any] = {"at": 0.0, "rates": {}}

    def split() -> dict[tuple[str, str], float]:
        if time.monotonic() - cache["at"] < 0.5:  # a gateway picks up route changes within a moment, too
            return cache["rates"]
        out = {}
        for route in api.list("HTTPRoute", ns, {"app.kubernetes.io/managed-by": "airflow-eas"}):
            if "airflow-eas.io/service" in route["metadata"]["labels"]:
                continue  # a member's own route: nobody calls it here
            refs = route["spec"]["rules"][0]["backendRefs"]
            total = sum(r["weight"] for r in refs) or 1
            out.update({(ns, r["name"]): GROUP_RPS * r["weight"] / total for r in refs})
        cache.update(at=time.monotonic(), rates=out)
        return out

    exporter.split = split
    yield exporter
    exporter.split = None
