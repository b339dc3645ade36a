"""`GET /api/v2/services/{name}/series` and `eas metrics NAME --series` on a real server under traffic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import deleting_new_services, echo_spec, wait_running, wait_until


def eas(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_eas.cli", *args, "--endpoint", server.endpoint,
                           "--token", server.token], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def busy(eas_session) -> Iterator[str]:
    """A service with 11 s of traffic, all of it in the points; deleted after the module's tests."""
    with deleting_new_services(eas_session) as server:
        client = server.client
        client._call("POST", "/api/v2/services", json=echo_spec("series_svc"))
        wait_running(client, "series_svc")
        deadline = time.time() + 11  # across a 10-second boundary
        while time.time() < deadline:
            assert client.invoke("series_svc", b"{}")[0] == 200
            time.sleep(0.05)
        ended = time.time()

        def covered() -> bool:  # the sampler has taken the period of the last request
            return max(client.series("series_svc").points["t"], default=0) >= ended

        wait_until(covered, 30, "the points of all the traffic")
        yield "series_svc"


def test_points_and_instance_usage_over_the_api(eas_server, busy: str) -> None:
    body = eas_server.client.series(busy, "15m")
    assert body.step_seconds == 10
    assert body.window_seconds == 900
    points = body.points
    assert all(t % 10 == 0 for t in points["t"])
    sent = eas_server.client.metrics(busy, 600).requests
    assert sum(points["requests"]) == sent > 20
    assert set(points["errors"]) == {0}
    assert any(p is not None for p in points["p99_ms"])
    (instance,) = eas_server.client.describe(busy).instance_list
    usage = body.instances[instance.id]
    assert usage["t"]
    assert max(usage["memory_mb"]) > 5


def test_bad_window_and_unknown_service_are_clear_errors(eas_server, busy: str) -> None:
    auth = {"Authorization": f"Bearer {eas_server.token}"}
    bad = requests.get(f"{eas_server.endpoint}/api/v2/services/{busy}/series", params={"window": "2d"},
                       headers=auth, timeout=10)
    assert bad.status_code == 400
    assert "window: '2d' is not one of 15m, 1h, 24h" in bad.json()["message"]
    missing = requests.get(f"{eas_server.endpoint}/api/v2/services/nope/series", headers=auth, timeout=10)
    assert missing.status_code == 404
    assert requests.get(f"{eas_server.endpoint}/api/v2/services/{busy}/series", timeout=10).status_code == 401


def test_eas_metrics_series(eas_server, busy: str) -> None:
    table = eas(eas_server, "metrics", busy, "--series")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "one point per 10 s" in lines[0]
    assert "REQUESTS" in lines[1]
    assert "P99_MS" in lines[1]
    assert any(f"{busy}-" in line and "memory" in line for line in lines)
    as_json = json.loads(eas(eas_server, "metrics", busy, "--series", "1h", "--json").stdout)
    assert as_json["window_seconds"] == 3600
    assert sum(as_json["points"]["requests"]) > 0
    wrong = eas(eas_server, "metrics", busy, "--series", "2d")
    assert wrong.returncode != 0
    assert "invalid choice: '2d'" in wrong.stderr
