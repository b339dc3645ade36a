"""The gateway's request body limit (issue 12 #3): one authenticated 47 MB prediction blocked a model
server for 10 s, HAProxy marked the instance down and other clients got 503."""

from __future__ import annotations

import json
import time

import requests

from airflow_eas.spec import parse_spec
from tests.conftest import wait_running
from tests.load import Load
from tests.server.gateway.stats import server_stats

ROW = [5.1, 3.5, 1.4, 0.2]


def test_a_body_over_the_limit_gets_413_while_others_are_served(eas_server, sklearn_model) -> None:
    client = eas_server.client
    client.create(parse_spec({"name": "lim_sk", "processor": "sklearn", "model_path": f"file://{sklearn_model}"}))
    info = wait_running(client, "lim_sk", 1)
    small = json.dumps({"instances": [ROW]}).encode()
    huge = json.dumps({"instances": [ROW] * 2_400_000}).encode()  # 47 MB
    with Load(info.endpoint, info.token, threads=2, body=small, pause=0.01) as load:
        time.sleep(1)
        t0 = time.monotonic()
        resp = requests.post(info.endpoint, data=huge, headers={"Authorization": info.token}, timeout=60)
        refused_in = time.monotonic() - t0
        big = requests.post(info.endpoint, data=json.dumps({"instances": [ROW] * 250_000}),  # 5 MB: served
                            headers={"Authorization": info.token}, timeout=120)
        time.sleep(1)
    assert resp.status_code == 413
    assert resp.json()["code"] == "PayloadTooLarge"
    assert "32 MB" in resp.json()["message"]
    assert refused_in < 10, f"refusing took {refused_in:.1f} s"
    assert big.status_code == 200
    assert len(big.json()["predictions"]) == 250_000
    assert load.statuses[200] > 0
    assert load.errors == 0, load.failures[:5]
    (server,) = server_stats(eas_server.data_dir, "s_lim_sk")
    assert server["chkdown"] == "0", "the instance was marked DOWN"
