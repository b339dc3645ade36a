"""A crash between a launch and the saving of its handle leaves no orphan; shutdown ends everything."""

from __future__ import annotations

from pathlib import Path

import psutil

from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.server.runtimes.process import OWNER_ENV
from airflow_eas.server.store import Store
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running, wait_until
from tests.server.test_platform import _pid_listening


def _ours(owner: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(OWNER_ENV) == owner:
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def _port_free(port: int) -> bool:
    return not any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in psutil.net_connections("tcp"))


def test_kill_9_between_launch_and_handle_save_leaves_no_orphan(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "eas", free_port(), free_port(),
                            env={"EAS_TEST_LAUNCH_RECORD_DELAY": "30"})
    server.data_dir.mkdir()
    server.start()
    owner = ""
    try:
        client = server.client
        client.create(parse_spec(echo_spec("orphan")))
        address = wait_until(lambda: (i := client.describe("orphan").instance_list) and i[0].address, 10, "a port")
        pid = wait_until(lambda: _try_pid(address), 20, "the instance to listen (its handle not yet saved)")
        store = Store(server.data_dir / "state.db")
        assert [i.handle for i in store.instances()] == [""], "the handle is not saved yet"
        owner = store.setting("server_id") or ""
        store.close()
        server.kill()
        assert psutil.pid_exists(pid), "the instance outlived the crash"

        server.env = {}
        server.start()
        client = server.client
        wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 20,
                   "the unrecorded instance to be ended by the restarted server")
        info = wait_running(client, "orphan", 1)
        assert info.instance_list[0].address == address or _port_free(int(address.rsplit(":", 1)[1]))
        assert len(_ours(owner)) == 1, "only the relaunched instance runs"
        client.delete("orphan")
        wait_until(lambda: not client.list(), 30, "the delete")
        wait_until(lambda: not _ours(owner), 10, "no process of the deleted service")
        assert _port_free(int(address.rsplit(":", 1)[1]))

        client.create(parse_spec(echo_spec("left", instances=2)))
        wait_running(client, "left", 2)
    finally:
        server.stop()
    assert owner, "the server's shutdown ended everything it started"
    assert not _ours(owner), "the server's shutdown ended everything it started"


def _try_pid(address: str) -> int | None:
    try:
        return _pid_listening(address)
    except AssertionError:
        return None
