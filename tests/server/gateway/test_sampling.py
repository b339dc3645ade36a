"""A busy route logs a sample of its requests (metrics.py), but every error an instance answers is
logged by itself: the error count the canary guard and the analysis judge is exact, not estimated."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from airflow_eas.server.gateway.config import read_map
from airflow_eas.spec import parse_spec
from tests.conftest import wait_running, wait_until

FAILURES = 300
# an upstream far faster than the sampling threshold: 200 for every path, 500 under /fail
NGINX = """daemon off;
worker_processes 1;
pid {dir}/nginx-$PORT.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body-$PORT;
    server {{
        listen 127.0.0.1:$PORT;
        location /fail {{ return 500 '{{"error":"planted"}}'; }}
        location / {{ return 200 '{{"ok":true}}'; }}
    }}
}}
"""


def nginx_command(folder: Path) -> str:
    folder.mkdir(mode=0o755, exist_ok=True)
    template = folder / "nginx.conf.in"
    template.write_text(NGINX.format(dir=folder))
    start = folder / "start.sh"
    start.write_text(f'#!/bin/sh\nsed "s/\\$PORT/$PORT/g" {template} > {folder}/nginx-$PORT.conf\n'
                     f"exec nginx -c {folder}/nginx-$PORT.conf\n")
    start.chmod(0o755)
    return str(start)


def test_a_sampled_route_counts_every_instance_error(eas_server, tmp_path: Path) -> None:
    client = eas_server.client
    spec = {"name": "sampled_ok", "metadata": {"instance": 1},
            "containers": [{"image": "local", "command": nginx_command(tmp_path / "nginx"), "port": 8000}]}
    client.create(parse_spec(spec))
    info = wait_running(client, "sampled_ok", 1)
    sample_map = eas_server.data_dir / "gateway" / "sample.map"
    load = subprocess.Popen(["wrk", "-t1", "-c8", "-d60s", "-H", f"Authorization: {info.token}", info.endpoint],
                            stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: read_map(sample_map).get("sampled_ok", 1000) < 500, 30,
                   "the gateway to log a sample of the busy route")
        keep = read_map(sample_map)["sampled_ok"]
        with requests.Session() as session:
            statuses = [session.get(f"{info.endpoint}/fail", headers={"Authorization": info.token}, timeout=10)
                        .status_code for _ in range(FAILURES)]
    finally:
        load.terminate()
        load.wait(10)
    assert statuses == [500] * FAILURES
    time.sleep(1.5)  # the receiver's last lines
    metrics = client.metrics("sampled_ok", 120)
    assert metrics.errors == FAILURES, f"errors counted at {keep} per mille: {metrics.errors}"
    assert metrics.statuses["500"] == FAILURES
    assert metrics.requests > 10 * FAILURES, "the route was busy"
