"""A uid per service: under a root server, one service's instances cannot read another's environment,
work folder, cache or control groups, and still read their own model files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from airflow_eas.errors import DeployFailed
from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.server.runtimes.users import SERVICE_UIDS, InstanceUsers, ServiceUsers, instance_users
from airflow_eas.server.store import Store
from airflow_eas.spec import parse_spec
from tests.conftest import APPS, echo_spec, wait_running

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user (the test interpreter may not be)
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="running instances as other users needs root")


def test_a_service_keeps_its_uid_and_another_gets_its_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    a = store.service_uid("a", iter(SERVICE_UIDS))
    assert store.service_uid("a", iter([])) == a, "a new version or a restart keeps the service's uid"
    b = store.service_uid("b", iter(SERVICE_UIDS))
    assert b != a
    assert Store(tmp_path / "state.db").service_uid("a", iter([])) == a, "the uid is in the store"
    store.delete_service("a")
    assert store.service_uid("c", iter(SERVICE_UIDS)) == a, "a deleted service's uid is free again"


def test_uids_of_accounts_and_running_processes_are_never_handed_out(tmp_path: Path) -> None:
    users = ServiceUsers(Store(tmp_path / "state.db").service_uid, uids=range(0, 2))  # root and daemon
    with pytest.raises(DeployFailed, match="every instance uid from 0 to 1 is taken"):
        users.identity("svc")
    mine = os.getuid()
    assert mine not in list(ServiceUsers(lambda *_: None, uids=range(mine, mine + 1))._free())


def test_who_instances_run_as(tmp_path: Path) -> None:
    allocate = Store(tmp_path / "state.db").service_uid
    assert instance_users("root", allocate).identity("svc") is None, "root: the server's own user"
    assert type(instance_users("", allocate)) is InstanceUsers
    with pytest.raises(DeployFailed, match="--instance-user 'no-such-user-here': no such user"):
        instance_users("no-such-user-here", allocate)
    auto = instance_users("auto", allocate).identity("svc")
    if os.geteuid() == 0:
        assert auto is not None
        assert auto.uid in SERVICE_UIDS
        assert auto.gid == auto.uid
    else:
        assert auto is None, "a server that is not root runs instances as itself"


@pytest.fixture
def root_server() -> Iterator[tuple[EmbeddedServer, Path]]:
    """`eas server` as root with the default instance users; its data dir outside any 0700 folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="eas-users-", dir="/tmp"))
    server = EmbeddedServer(data_dir, free_port(), free_port(), instance_user="auto")
    server.start()
    try:
        yield server, data_dir
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _model_repo(folder: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    folder.mkdir()
    (folder / "model.txt").write_text("weights of a")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "model"]):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
    return f"file://{folder}"


def _cgroup_dir(pid: int) -> str | None:
    """The instance's own control group (memory), where the runtime made one."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "/eas/" in path and ("memory" in controllers.split(",") or controllers == ""):
            return f"/sys/fs/cgroup{'/memory' if controllers else ''}{path}"
    return None


def _listener(address: str) -> psutil.Process:
    port = int(address.rsplit(":", 1)[1])
    return psutil.Process(next(c.pid for c in psutil.net_connections("tcp")
                               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN))


@root_only
def test_an_instance_cannot_read_another_services_secrets_but_reads_its_own_model(root_server) -> None:
    server, data_dir = root_server
    client = server.client
    other = echo_spec("users_b", SECRET_OF_B="b-db-password")
    other["containers"][0]["command"] = f"{SYSTEM_PYTHON} {APPS / 'echo_app.py'}"
    other["metadata"]["memory"] = 256  # a control group of its own, where the host has them
    client.create(parse_spec(other))
    b = _listener(wait_running(client, "users_b", 1).instance_list[0].address)
    assert "SECRET_OF_B" in b.environ()
    b_cgroup = _cgroup_dir(b.pid)
    probes = [f"/proc/{b.pid}/environ", f"/proc/{b.pid}/cwd", str(data_dir / "services/users_b/v1"),
              str(data_dir / "services/users_b/v1/spec.json"), str(data_dir / "cache/users_b"),
              *([b_cgroup] if b_cgroup else []), "/proc/self/environ"]
    repo = _model_repo(data_dir.parent / f"{data_dir.name}-model")
    try:
        prober = {
            "name": "users_a",
            "containers": [{"image": "local", "command": f"{SYSTEM_PYTHON} {APPS / 'neighbour_probe.py'}",
                            "env": [{"name": "PROBES", "value": json.dumps(probes)},
                                    {"name": "OTHER_PID", "value": str(b.pid)},
                                    {"name": "MODEL_FILE", "value": "model.txt"}]}],
            "storage": [{"mount_path": "/models", "git": {"repo": repo}}],
            "metadata": {"instance": 1, "memory": 256},
        }
        client.create(parse_spec(prober))
        a_info = wait_running(client, "users_a", 1)
        a = _listener(a_info.instance_list[0].address)
        seen = requests.get(a_info.endpoint, headers={"Authorization": a_info.token}, timeout=30).json()
    finally:
        shutil.rmtree(data_dir.parent / f"{data_dir.name}-model", ignore_errors=True)
    denied = {path: result for path, result in seen["probes"].items() if path != "/proc/self/environ"}
    assert set(denied.values()) == {"denied"}, denied
    assert seen["signal"] == "denied", "nor can it signal the other service's instance"
    assert a.uids().real == seen["uid"]
    assert seen["uid"] in SERVICE_UIDS
    assert b.uids().real in SERVICE_UIDS
    assert seen["uid"] != b.uids().real, "each service runs as a uid of its own"
    assert seen["probes"]["/proc/self/environ"] == "read"
    assert seen["model"] == "weights of a", "its own model files are readable"
    assert seen["own_spec"] == "users_a"
    assert seen["own_cache"] == len("written")
    a_cgroup = _cgroup_dir(a.pid)
    if a_cgroup:
        own = subprocess.run(["setpriv", f"--reuid={seen['uid']}", f"--regid={seen['uid']}", "--clear-groups",
                              "ls", a_cgroup], capture_output=True, text=True, check=False)
        assert own.returncode == 0, f"an instance reads its own limits: {own.stderr}"
