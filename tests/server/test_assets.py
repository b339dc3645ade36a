"""Assets: named warm-up data (and images) used as "asset:NAME", resolved at launch, guarded while in use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_eas.spec import parse_spec
from tests.conftest import wait_running, wait_until
from tests.server.test_cli import _one_line_error, eas


@pytest.fixture
def model(tmp_path: Path) -> Path:
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]), path)
    return path


def test_warm_up_data_asset_resolved_at_launch_and_guarded(eas_server, model: Path, tmp_path: Path) -> None:
    warm = tmp_path / "warmup.jsonl"
    warm.write_text('{"instances": [[0.5]]}\n[[2.5]]\n')
    res = eas(eas_server, "asset", "create", "fraud_warmup", "--type", "data", "--uri", f"file://{warm}",
              "--description", "two rows of last week's traffic", "--version", "2026-11")
    assert res.returncode == 0, res.stderr
    assert '"asset:fraud_warmup"' in res.stdout, res.stderr
    _one_line_error(eas(eas_server, "asset", "create", "fraud_warmup", "--type", "data", "--uri", "/x"),
                    "asset 'fraud_warmup' exists")
    _one_line_error(eas(eas_server, "asset", "create", "Bad", "--type", "data", "--uri", "nowhere"),
                    "'Bad' is not a valid asset name")

    client = eas_server.client
    client.create(parse_spec({"name": "asset_user", "processor": "sklearn", "model_path": f"file://{model}",
                              "warm_up_data_path": "asset:fraud_warmup", "metadata": {"warm_up_count": 2}}))
    wait_running(client, "asset_user", 1)
    assert "4 warm-up requests" in client.logs("asset_user"), "the asset's file was replayed (2 lines x 2)"
    assert client.describe("asset_user").spec["warm_up_data_path"] == "asset:fraud_warmup", "kept by name"

    listed = json.loads(eas(eas_server, "asset", "list", "--json").stdout)  # other tests' assets too
    assert [(a["name"], a["type"], a["version"], a["used_by"]) for a in listed if a["name"] == "fraud_warmup"] == [
        ("fraud_warmup", "data", "2026-11", ["asset_user"])]
    _one_line_error(eas(eas_server, "asset", "delete", "fraud_warmup"), "in use by service(s) asset_user")

    # a spec naming an asset nobody registered fails its deploy, saying which
    client.create(parse_spec({"name": "asset_missing", "processor": "sklearn", "model_path": f"file://{model}",
                              "warm_up_data_path": "asset:nope"}))
    info = wait_until(lambda: (i := client.describe("asset_missing")).status == "Failed" and i, 60, "Failed")
    assert "asset 'nope' is not registered" in info.reason, info.reason
    client.delete("asset_missing")

    client.delete("asset_user")
    wait_until(lambda: all(s.name != "asset_user" for s in client.list()), 30, "asset_user deleted")
    res = eas(eas_server, "asset", "delete", "fraud_warmup")
    assert res.returncode == 0, res.stderr
    assert "fraud_warmup" not in [a["name"] for a in json.loads(eas(eas_server, "asset", "list", "--json").stdout)]
