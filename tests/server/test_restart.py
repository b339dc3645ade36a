"""Restart safety: the control plane or the gateway dies, clients keep being served, nothing is lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_eas.errors import PlatformUnavailable
from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running, wait_until
from tests.load import Load
from tests.server.test_platform import _pid_listening


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "eas", free_port(), free_port())
    server.data_dir.mkdir()
    yield server.start()
    server.stop()


def test_kill_9_of_the_server_loses_nothing(own_server: EmbeddedServer) -> None:
    client = own_server.client
    client.create(parse_spec(echo_spec("steady", instances=2, group="grp")))
    client.create(parse_spec(echo_spec("spare", instances=1, group="grp")))
    before = wait_running(client, "steady", 2)
    wait_running(client, "spare", 1)
    group = client.set_traffic("grp", {"steady": 70, "spare": 30})

    with Load(group.endpoint, group.token, threads=4) as load:
        wait_until(lambda: load.total > 200, 10, "traffic")
        own_server.kill()
        n = load.total
        wait_until(lambda: load.total > n + 500, 10, "the gateway to serve without its control plane")
        own_server.start()
        client = own_server.client
        after = wait_running(client, "steady", 2)
        n = load.total
        wait_until(lambda: load.total > n + 200, 10, "traffic after the restart")
    assert load.errors == 0, load.failures[:5]
    assert {i.id for i in after.instance_list} == {i.id for i in before.instance_list}, "instances re-adopted"
    assert all(i.restarts == 0 for i in after.instance_list)
    assert {m.service: m.weight for m in client.describe_group("grp").members} == {"steady": 70, "spare": 30}

    # the restarted control plane still drives what it adopted
    client.scale("steady", 1)
    wait_until(lambda: len(client.describe("steady").instance_list) == 1, 30, "scale in of adopted instances")
    client.delete("spare")
    wait_until(lambda: [s.name for s in client.list()] == ["steady"], 30, "delete of an adopted service")


def test_instances_that_died_while_the_server_was_down_come_back(own_server: EmbeddedServer) -> None:
    client = own_server.client
    info = client.create(parse_spec(echo_spec("phoenix", instances=1)))
    info = wait_running(client, "phoenix", 1)
    own_server.kill()
    os.kill(_pid_listening(info.instance_list[0].address), signal.SIGKILL)
    time.sleep(0.2)
    own_server.start()
    client = own_server.client
    info = wait_running(client, "phoenix", 1)
    status, body = client.invoke("phoenix", "{}")
    assert status == 200


def test_gateway_killed_is_started_again_from_the_store(own_server: EmbeddedServer) -> None:
    client = own_server.client
    info = client.create(parse_spec(echo_spec("guarded", instances=1)))
    wait_running(client, "guarded", 1)
    master = int((own_server.data_dir / "gateway" / "haproxy.pid").read_text().split()[0])
    os.killpg(os.getpgid(master), signal.SIGKILL)  # master and worker at once

    def serves() -> bool:
        try:
            return client.invoke("guarded", "{}")[0] == 200
        except PlatformUnavailable:
            return False

    wait_until(serves, 20, "the gateway to come back")
    assert client.gateway_url()  # the control plane never went away
    status, _ = client.invoke("guarded", "{}")
    assert status == 200
    assert info.token  # same token: routes and tokens came back from the store
