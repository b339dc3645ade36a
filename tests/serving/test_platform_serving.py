"""A processor service deployed on the real platform (eas server + HAProxy), invoked through the gateway."""

from __future__ import annotations

import json

import requests

from airflow_eas.spec import parse_spec
from tests.conftest import wait_running, wait_until


def test_sklearn_processor_through_the_gateway(eas_server, sklearn_model, tmp_path) -> None:
    warm = tmp_path / "warmup.jsonl"
    warm.write_text(json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}) + "\n")
    spec = {
        "name": "iris_sk",
        "processor": "sklearn",
        "model_path": f"file://{sklearn_model}",
        "warm_up_data_path": str(warm),
        "metadata": {"instance": 1, "warm_up_count": 2},
    }
    client = eas_server.client
    info = client.create(parse_spec(spec))
    info = wait_running(client, "iris_sk", 1)
    rows = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    resp = requests.post(
        info.endpoint, data=json.dumps(rows), headers={"Authorization": info.token}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["predictions"] == [0, 2]
    assert len(doc["probabilities"]) == 2
    assert requests.post(info.endpoint, data=b"{}", timeout=10).status_code == 401


def _failed(client, name: str):
    return wait_until(lambda: (i := client.describe(name)).status == "Failed" and i, 60, f"{name} to fail")


def test_corrupt_model_fails_the_service_with_a_clear_event_and_no_traffic(eas_server, tmp_path) -> None:
    model = tmp_path / "model.joblib"
    model.write_bytes(b"this is not a pickle")
    client = eas_server.client
    info = client.create(parse_spec({"name": "corrupt", "processor": "sklearn", "model_path": str(model)}))
    info = _failed(client, "corrupt")
    assert "exited with code 3" in info.reason
    assert "model.joblib" in info.reason
    assert "airflow-eas serving:" in info.reason
    assert info.running_instances == 0
    resp = requests.post(info.endpoint, data=b"{}", headers={"Authorization": info.token}, timeout=10)
    assert resp.status_code == 503, "no instance ever received traffic"


def test_failed_warm_up_keeps_the_instance_out_of_traffic(eas_server, sklearn_model, tmp_path) -> None:
    warm = tmp_path / "warmup.jsonl"
    warm.write_text('{"instances": [[5.1, 3.5, 1.4, 0.2]]}\n{"instances": "not rows"}\n')
    spec = {"name": "cold", "processor": "sklearn", "model_path": str(sklearn_model), "warm_up_data_path": str(warm)}
    client = eas_server.client
    client.create(parse_spec(spec))
    info = _failed(client, "cold")
    assert "warm-up failed" in info.reason
    assert any("warm-up failed" in e.message for e in info.events)
