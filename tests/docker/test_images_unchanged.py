"""Images run unchanged: a server that listens on its own fixed port (not $PORT) deploys as it is."""

from __future__ import annotations

import pytest
import requests

from airflow_eas.spec import parse_spec
from tests.conftest import wait_running, wait_until
from tests.docker.conftest import BASE_IMAGE

pytestmark = pytest.mark.docker


def test_off_the_shelf_server_on_its_own_port_side_by_side(docker_server, docker_client) -> None:
    client = docker_server.client
    # python's http.server ignores $PORT: it listens on 0.0.0.0:8000, as an image built elsewhere would
    client.create(parse_spec({
        "name": "dk_fixed_port", "metadata": {"instance": 2},
        "containers": [{"image": BASE_IMAGE, "command": "python3 -m http.server 8000 --directory /etc",
                        "port": 8000}],
    }))
    info = wait_running(client, "dk_fixed_port", 2)
    published = {i.address for i in info.instance_list}
    assert len(published) == 2, published
    assert all(a.startswith("127.0.0.1:") for a in published), published
    for address in published:  # each instance on its own loopback port, both listening on 8000 inside
        assert "os-release" in requests.get(f"http://{address}/", timeout=5).text
    for _ in range(4):  # through the gateway, which routes to the published ports
        resp = requests.get(f"{info.endpoint}/os-release", headers={"Authorization": info.token}, timeout=5)
        assert resp.status_code == 200
        assert "bookworm" in resp.text
    mine = [f"eas.data_dir={docker_server.data_dir.resolve()}", "eas.service=dk_fixed_port"]
    containers = docker_client.api.containers(filters={"label": mine})
    assert {c["HostConfig"]["NetworkMode"] for c in containers} == {"airflow-eas"}
    client.delete("dk_fixed_port")
    wait_until(lambda: not any(s.name == "dk_fixed_port" for s in client.list()), 30, "delete")
