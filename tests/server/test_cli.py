"""The `eas` command as users run it: real process, real server, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import echo_spec, wait_until


def eas(server, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "EAS_ENDPOINT": server.endpoint, "EAS_TOKEN": server.token, **(env or {})}
    return subprocess.run([sys.executable, "-m", "airflow_eas.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


def _one_line_error(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("eas: "), res.stderr
    assert needle in lines[0], lines[0]


def test_cli_round_trip(eas_server, tmp_path: Path) -> None:
    spec = tmp_path / "svc.json"
    spec.write_text(json.dumps(echo_spec("cli_svc", group="cli_grp", APP_VERSION="1")))
    res = eas(eas_server, "create", str(spec))
    assert res.returncode == 0
    assert "cli_svc created" in res.stdout

    wait_until(lambda: json.loads(eas(eas_server, "desc", "cli_svc", "--json").stdout)["status"] == "Running",
               30, "Running")
    desc = json.loads(eas(eas_server, "desc", "cli_svc", "--json").stdout)
    for key in ("name", "status", "endpoint", "token", "group", "instances", "running_instances", "version",
                "instance_list"):
        assert key in desc, key
    assert desc["group"] == "cli_grp"
    assert desc["instances"] == 1
    assert desc["running_instances"] == 1
    assert set(desc["instance_list"][0]) >= {"id", "address", "status"}
    assert "Recent events" in eas(eas_server, "desc", "cli_svc").stdout

    assert "cli_svc" in eas(eas_server, "list").stdout
    assert any(s["name"] == "cli_svc" for s in json.loads(eas(eas_server, "list", "--json").stdout))

    res = eas(eas_server, "invoke", "cli_svc", "--data", "ping")
    assert res.returncode == 0
    assert json.loads(res.stdout)["echo"] == "ping"

    res = eas(eas_server, "group", "traffic", "cli_grp", "cli_svc=100")
    assert res.returncode == 0
    assert "cli_svc=100" in res.stdout
    group = json.loads(eas(eas_server, "group", "desc", "cli_grp", "--json").stdout)
    assert set(group) >= {"name", "endpoint", "token", "members"}
    assert group["members"] == [{"service": "cli_svc", "weight": 100}]
    res = eas(eas_server, "invoke", "cli_grp", "--data", "via-group")
    assert res.returncode == 0
    assert json.loads(res.stdout)["echo"] == "via-group"

    res = eas(eas_server, "modify", "cli_svc", "-D", "metadata.instance=2")
    assert res.returncode == 0
    assert "version 2" in res.stdout
    wait_until(lambda: json.loads(eas(eas_server, "desc", "cli_svc", "--json").stdout)["running_instances"] == 2,
               30, "two instances")

    metrics = json.loads(eas(eas_server, "metrics", "cli_svc", "--json").stdout)
    assert metrics["requests"] >= 1
    assert set(metrics) >= {"errors", "p50_ms", "p95_ms", "p99_ms", "error_rate"}
    assert "REQUESTS" in eas(eas_server, "metrics", "cli_svc").stdout
    assert "echo_app" in eas(eas_server, "logs", "cli_svc").stdout

    assert eas(eas_server, "stop", "cli_svc").returncode == 0
    assert eas(eas_server, "start", "cli_svc").returncode == 0
    assert eas(eas_server, "delete", "cli_svc").returncode == 0


def test_cli_errors_are_one_line(eas_server, tmp_path: Path) -> None:
    _one_line_error(eas(eas_server, "desc", "nope"), "service 'nope' not found")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "ok_name", "processor": "sklearn", "model_path": "/m", "bogus": 1}))
    _one_line_error(eas(eas_server, "create", str(bad)), "bogus: unknown field")
    bad.write_text("{not json")
    _one_line_error(eas(eas_server, "create", str(bad)), "not valid JSON")
    _one_line_error(eas(eas_server, "create", str(tmp_path / "missing.json")), "cannot read spec file")
    _one_line_error(eas(eas_server, "group", "traffic", "g", "a=lots"), "MEMBER=WEIGHT")
    _one_line_error(eas(eas_server, "list", env={"EAS_TOKEN": "wrong"}), "admin token")
    _one_line_error(eas(eas_server, "list", env={"EAS_ENDPOINT": "http://127.0.0.1:1"}), "cannot reach eas server")
    _one_line_error(eas(eas_server, "list", env={"EAS_ENDPOINT": ""}), "no endpoint")
