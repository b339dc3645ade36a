"""`eas server --runtime docker` end to end: real dockerd, real containers, real HAProxy, real HTTP."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest
import requests

from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.spec import parse_spec
from tests.conftest import wait_running, wait_until
from tests.docker.conftest import BASE_IMAGE, docker_echo_spec, remove_containers_of
from tests.load import Load

pytestmark = pytest.mark.docker


def _containers(docker_client, server: EmbeddedServer, service: str, *, all_: bool = True) -> dict[str, dict]:
    """{container id: inspect} of the server's containers of one service."""
    labels = [f"eas.service={service}", f"eas.data_dir={server.data_dir.resolve()}"]
    found = docker_client.api.containers(all=all_, filters={"label": labels})
    out = {}
    for c in found:
        try:
            out[c["Id"]] = docker_client.api.inspect_container(c["Id"])
        except docker.errors.NotFound:
            continue  # removed between the listing and the inspect: it is gone, as the server meant
    return out


def _post(info, body: bytes = b"{}") -> requests.Response:
    return requests.post(info.endpoint, data=body, headers={"Authorization": info.token}, timeout=10)


def test_deploy_scale_update_delete(docker_server, docker_client) -> None:
    client = docker_server.client
    spec = docker_echo_spec("dk_life", APP_VERSION="1")
    spec["metadata"].update(cpu=0.5, memory=128)
    client.create(parse_spec(spec))
    info = wait_running(client, "dk_life", 1)
    resp = _post(info, b"hello")
    assert resp.status_code == 200
    assert resp.json()["echo"] == "hello"
    assert resp.json()["instance"] == info.instance_list[0].id

    (cid, attrs), = _containers(docker_client, docker_server, "dk_life").items()
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "airflow-eas"
    assert host["RestartPolicy"]["Name"] == "no"
    assert host["Init"] is True
    published = info.instance_list[0].address.rsplit(":", 1)[1]
    assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": published}]}
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 128 * 1024 * 1024
    labels = attrs["Config"]["Labels"]
    assert labels["eas.instance"] == info.instance_list[0].id
    assert labels["eas.service"] == "dk_life"
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "8000", "PORT: the declared containers[].port"
    assert attrs["Config"]["Cmd"] == ["python3", "/app/echo_app.py"], "command split without a shell"
    wait_until(lambda: "listening on" in client.logs("dk_life"), 10, "container output in the instance log")

    client.scale("dk_life", 3)
    info = wait_running(client, "dk_life", 3)
    assert len(_containers(docker_client, docker_server, "dk_life")) == 3
    seen = {_post(info).json()["instance"] for _ in range(30)}
    assert seen == {i.id for i in info.instance_list}, "round robin reaches every container"
    client.scale("dk_life", 1)
    wait_until(lambda: len(_containers(docker_client, docker_server, "dk_life")) == 1, 30,
               "retired containers to be removed")

    # rolling update under load: a new container is ready before the old one leaves
    before = set(_containers(docker_client, docker_server, "dk_life"))
    with Load(info.endpoint, info.token, threads=3) as load:
        wait_until(lambda: load.total > 50, 10, "traffic")
        spec["containers"][0]["env"] = [{"name": "APP_VERSION", "value": "2"}]
        client.modify(parse_spec(spec))
        wait_until(lambda: (i := client.describe("dk_life")).status == "Running" and i.version == 2
                   and len(i.instance_list) == 1 and i.instance_list[0].version == 2, 60, "the rolling update")
        n = load.total
        wait_until(lambda: load.total > n + 50, 10, "traffic after the update")
    assert load.errors == 0, load.failures[:5]
    assert _post(info).json()["version"] == "2"
    after = set(_containers(docker_client, docker_server, "dk_life"))
    assert len(after) == 1, "the old container was replaced and removed"
    assert not after & before, "the old container was replaced and removed"

    client.delete("dk_life")
    wait_until(lambda: not any(s.name == "dk_life" for s in client.list()), 30, "delete")
    wait_until(lambda: not _containers(docker_client, docker_server, "dk_life"), 10, "containers removed")


def test_mounts_are_visible_inside_containers(docker_server, docker_client, s3_server, tmp_path: Path) -> None:
    import boto3

    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("from local")
    repo = tmp_path / "repo"
    repo.mkdir()
    git_env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "code.txt").write_text("from git")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), *git_env, "commit", "-q", "-m", "c"], check=True)
    s3 = boto3.client("s3", endpoint_url=s3_server["EAS_OSS_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="y")
    s3.create_bucket(Bucket="dkmounts")
    s3.put_object(Bucket="dkmounts", Key="models/m.txt", Body=b"from oss")

    spec = docker_echo_spec("dk_mounts")
    spec["storage"] += [
        {"mount_path": "/data", "local": {"path": str(data), "readOnly": True}},
        {"mount_path": "/shared", "nfs": {"server": "127.0.0.1", "path": str(data)}},
        {"mount_path": "/code", "git": {"repo": f"file://{repo}", "branch": "main"}},
        {"mount_path": "/models", "oss": {"path": "oss://dkmounts/models/"}},
    ]
    client = docker_server.client
    client.create(parse_spec(spec))
    wait_running(client, "dk_mounts", 1)
    (cid, _), = _containers(docker_client, docker_server, "dk_mounts").items()
    container = docker_client.containers.get(cid)

    def cat(path: str) -> str:
        code, out = container.exec_run(["cat", path])
        assert code == 0, out
        return out.decode()

    assert cat("/data/hello.txt") == "from local"
    assert cat("/shared/hello.txt") == "from local"
    assert cat("/code/code.txt") == "from git"
    assert cat("/models/m.txt") == "from oss"
    assert container.exec_run(["touch", "/data/new"]).exit_code != 0, "readOnly mounts are read-only"
    assert container.exec_run(["touch", "/shared/new"]).exit_code == 0
    assert (data / "new").exists(), "a writable bind mount writes through to the host"


def test_bad_image_fails_clearly_and_changes_nothing_else(docker_server, docker_client) -> None:
    client = docker_server.client
    client.create(parse_spec(docker_echo_spec("dk_steady", instances=2)))
    steady = wait_running(client, "dk_steady", 2)
    before = set(_containers(docker_client, docker_server, "dk_steady"))
    with Load(steady.endpoint, steady.token, threads=2) as load:
        bad = docker_echo_spec("dk_bad")
        bad["containers"][0]["image"] = "airflow-eas/no-such-image:1"
        client.create(parse_spec(bad))
        gpu = docker_echo_spec("dk_gpu")
        gpu["metadata"]["gpu"] = 1
        client.create(parse_spec(gpu))
        failed = wait_until(lambda: (i := client.describe("dk_bad")).status == "Failed" and i, 60, "dk_bad Failed")
        assert "image 'airflow-eas/no-such-image:1' is not on this Docker engine" in failed.reason, failed.reason
        missing = docker_echo_spec("dk_nomount")
        missing["storage"].append({"mount_path": "/data", "local": {"path": "/no/such/host/dir"}})
        client.create(parse_spec(missing))
        nomount = wait_until(lambda: (i := client.describe("dk_nomount")).status == "Failed" and i, 60, "Failed")
        assert "bind source path does not exist: /no/such/host/dir" in nomount.reason, nomount.reason
        gpu_info = client.describe("dk_gpu")
        if docker_client.info().get("Runtimes", {}).get("nvidia") is None:
            gpu_info = wait_until(lambda: (i := client.describe("dk_gpu")).status == "Failed" and i, 60, "no GPU")
            assert "cannot start a container of" in gpu_info.reason, gpu_info.reason
            assert "gpu" in gpu_info.reason, gpu_info.reason
        wait_until(lambda: load.total > 100, 10, "traffic")
    assert load.errors == 0, load.failures[:5]
    assert not _containers(docker_client, docker_server, "dk_bad"), "a failed image leaves no container"
    assert set(_containers(docker_client, docker_server, "dk_steady")) == before
    assert client.describe("dk_steady").status == "Running"


def test_kill_9_and_restart_readopts_every_container(docker_client, base_image, tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "eas", free_port(), free_port(), runtime="docker")
    server.data_dir.mkdir()
    server.start()
    try:
        client = server.client
        client.create(parse_spec(docker_echo_spec("dk_adopt", instances=2)))
        info = wait_running(client, "dk_adopt", 2)
        before = {i.id for i in info.instance_list}
        containers = set(_containers(docker_client, server, "dk_adopt", all_=False))
        assert len(containers) == 2
        with Load(info.endpoint, info.token, threads=2) as load:
            wait_until(lambda: load.total > 50, 10, "traffic")
            server.kill()
            n = load.total
            wait_until(lambda: load.total > n + 100, 10, "serving without the control plane")
            server.start()
            after = wait_running(server.client, "dk_adopt", 2)
        assert load.errors == 0, load.failures[:5]
        assert {i.id for i in after.instance_list} == before
        assert all(i.restarts == 0 for i in after.instance_list)
        assert set(_containers(docker_client, server, "dk_adopt")) == containers, "same containers, re-adopted"
        # the restarted server still drives them: one dies, it is restarted; scale in removes one
        victim = next(iter(containers))
        docker_client.api.kill(victim)
        wait_until(lambda: any(i.restarts for i in server.client.describe("dk_adopt").instance_list), 30,
                   "the killed container to be restarted")
        wait_running(server.client, "dk_adopt", 2)
        server.client.scale("dk_adopt", 1)
        wait_until(lambda: len(_containers(docker_client, server, "dk_adopt")) == 1, 30, "scale in")
        server.stop()
        wait_until(lambda: not _containers(docker_client, server, "dk_adopt"), 20, "containers gone after stop")
    finally:
        server.stop()
        remove_containers_of(server)


def test_base_image_has_python(docker_client, base_image) -> None:
    out = docker_client.containers.run(BASE_IMAGE, ["python3", "-c", "print(6 * 7)"], network_mode="host",
                                       remove=True)
    assert out.strip() == b"42"
