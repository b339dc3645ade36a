"""Overload sheds instead of flapping (issue 12 #7): under 500 connections to a single instance the
gateway holds requests in a bounded queue (per-server ``maxconn``/``maxqueue``, ``timeout queue``);
the instance is never marked DOWN and the only errors are the gateway's clean JSON 503s."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running
from tests.server.gateway.stats import server_stats

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make system)")
SCRIPT = Path(__file__).with_name("statuses.lua")


def _wrk(url: str, token: str, body: str, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", "-c500", f"-d{seconds}s", "--timeout", "30s", "-s", str(SCRIPT), url, "--", body, token],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    return json.loads(out.split("WRKSTATUS ", 1)[1].splitlines()[0])


def test_a_model_instance_under_500_connections_is_never_marked_down(eas_server, sklearn_model) -> None:
    client = eas_server.client
    client.create(parse_spec({"name": "flood_sk", "processor": "sklearn", "model_path": f"file://{sklearn_model}"}))
    info = wait_running(client, "flood_sk", 1)
    result = _wrk(info.endpoint, info.token, json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}), 15)
    statuses = result["statuses"]
    assert statuses.get("200", 0) > 0, result
    assert set(statuses) <= {"200", "503"}, result
    assert result["unclean_503"] == 0, result
    assert result["socket_errors"] == 0, result
    (server,) = server_stats(eas_server.data_dir, "s_flood_sk")
    assert server["status"] == "UP", server
    assert server["chkdown"] == "0", f"the instance went DOWN {server['chkdown']} time(s) under load"
    assert client.describe("flood_sk").status == "Running"


def test_requests_past_the_queue_wait_get_a_clean_503(eas_server) -> None:
    """A backend far slower than the offered load: the queue is bounded in time, so the excess is shed
    with the gateway's JSON 503 while the instance stays UP and keeps answering."""
    client = eas_server.client
    client.create(parse_spec(echo_spec("flood_slow", SLOW_MS="2000")))
    info = wait_running(client, "flood_slow", 1)
    result = _wrk(info.endpoint, info.token, "{}", 20)
    statuses = result["statuses"]
    assert statuses.get("200", 0) > 0, result
    assert statuses.get("503", 0) > 0, result
    assert set(statuses) <= {"200", "503"}, result
    assert result["unclean_503"] == 0, result
    assert result["socket_errors"] == 0, result
    (server,) = server_stats(eas_server.data_dir, "s_flood_slow")
    assert server["status"] == "UP", server
    assert server["chkdown"] == "0", server
