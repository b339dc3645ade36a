"""What the docker runtime asks the engine for, checked without one (a stand-in client)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from airflow_eas.errors import PlatformUnavailable
from airflow_eas.server.runtimes.base import LaunchRequest
from airflow_eas.server.runtimes.docker import DockerRuntime, _reason
from airflow_eas.server.storage import Storage
from airflow_eas.spec import parse_spec


class _Api:
    def containers(self, **_: object) -> list:
        return []


class _Client:
    api = _Api()

    def ping(self) -> bool:
        return True


def _request(tmp_path: Path, spec: dict) -> LaunchRequest:
    parsed = parse_spec(spec)
    prepared = Storage(tmp_path / "cache").prepare(parsed.name, 1, parsed, "docker")
    env = {"EAS_MOUNTS": json.dumps(prepared.eas_mounts), "EAS_CACHE_DIR": str(tmp_path / "cache" / parsed.name),
           "HOST": "0.0.0.0"}
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return LaunchRequest("svc-abc123", parsed, 41234, env, tmp_path / "svc.log", workdir)


def test_create_args_limits_gpus_mounts_and_command(tmp_path: Path) -> None:
    runtime = DockerRuntime(tmp_path, client=_Client(), model_server_image="my/model-server:1")
    image = _request(tmp_path, {
        "name": "svc", "metadata": {"instance": 1, "cpu": 1.5, "memory": 2048, "gpu": 2},
        "containers": [{"image": "my/app:2", "command": "serve --port 'x y'", "port": 8000}],
        "storage": [{"mount_path": "/data", "nfs": {"server": "10.0.0.1", "path": "/export", "readOnly": True}},
                    {"mount_path": "/local", "local": {"path": "/srv/local"}}],
    })
    args = runtime.create_args(image)
    assert args["image"] == "my/app:2"
    assert args["command"] == ["serve", "--port", "x y"]
    assert args["nano_cpus"] == 1_500_000_000
    assert args["mem_limit"] == "2048m"
    assert args["device_requests"][0]["Count"] == 2
    assert args["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert args["network"] == "airflow-eas"
    assert args["restart_policy"] == {"Name": "no"}
    assert args["init"] is True
    assert args["ports"] == {"8000/tcp": ("127.0.0.1", 41234)}, "the image's own port, published on loopback"
    env = args["environment"]
    assert env["PORT"] == "8000"
    assert env["HOST"] == "0.0.0.0"
    assert env["EAS_MOUNTS"] == "{}"
    mounts = {m["Target"]: m for m in args["mounts"]}
    nfs = mounts["/data"]
    assert nfs["Type"] == "volume"
    assert nfs["ReadOnly"] is True
    assert nfs["VolumeOptions"]["DriverConfig"]["Options"] == {
        "type": "nfs", "o": "addr=10.0.0.1,ro,nfsvers=4", "device": ":/export"}
    assert mounts["/local"]["Source"] == "/srv/local"
    assert mounts["/local"]["ReadOnly"] is False
    assert mounts[str(image.workdir)]["ReadOnly"] is True
    assert args["labels"] == {"eas.service": "svc", "eas.instance": "svc-abc123", "eas.data_dir": str(tmp_path),
                              "eas.port": "8000"}

    processor = runtime.create_args(_request(tmp_path, {"name": "proc", "processor": "sklearn",
                                                        "model_path": "/m/model.joblib"}))
    assert processor["image"] == "my/model-server:1"
    assert processor["working_dir"] == str(tmp_path / "work")
    assert processor["command"][:3] == ["python", "-m", "airflow_eas.serving"]
    assert processor["ports"] == {"8000/tcp": ("127.0.0.1", 41234)}
    assert processor["environment"]["PORT"] == "8000"
    assert "nano_cpus" not in processor
    assert "device_requests" not in processor

    script = runtime.create_args(_request(tmp_path, {"name": "scr", "containers": [
        {"image": "my/app:2", "script": "echo hi\nexec python3 app.py"}]}))
    assert script["command"] == ["/bin/sh", str(tmp_path / "work" / "script.sh")]


def test_unreachable_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(PlatformUnavailable, match="--runtime docker: cannot reach the Docker engine"):
        DockerRuntime(tmp_path)


def test_engine_errors_read_as_one_line() -> None:
    class Err(Exception):
        explanation = ('failed to create shim: OCI runtime create failed: runc create failed: unable to start '
                       'container process: exec: "nope": executable file not found in $PATH: unknown')

    assert _reason(Err()) == 'exec: "nope": executable file not found in $PATH'


def test_pmml_runs_in_the_pmml_variant_of_the_model_server_image() -> None:
    from airflow_eas.server.runtimes.docker import model_server_image_for

    assert model_server_image_for("airflow-eas/model-server:latest", "sklearn") == "airflow-eas/model-server:latest"
    assert model_server_image_for("airflow-eas/model-server:src-1a", "pmml") == "airflow-eas/model-server-pmml:src-1a"
    assert model_server_image_for("127.0.0.1:5000/eas/ms", "pmml") == "127.0.0.1:5000/eas/ms-pmml:latest"


def test_default_mounts_from_the_environment() -> None:
    from airflow_eas.errors import PlatformUnavailable
    from airflow_eas.server.runtimes.docker import parse_default_mounts

    (models,) = parse_default_mounts("/srv/models:/models:ro")
    assert (models["Target"], models["Source"], models["ReadOnly"]) == ("/models", "/srv/models", True)
    assert parse_default_mounts("") == []
    with pytest.raises(PlatformUnavailable, match="EAS_DOCKER_MOUNTS: 'models:/models' is not"):
        parse_default_mounts("models:/models")


def test_namespace_listens_reads_the_socket_table_of_a_process() -> None:
    """What `listens` checks for a container: a listener in the namespace of its process, not a mere bind."""
    from airflow_eas.server.runtimes.docker import namespace_listens

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert namespace_listens(os.getpid(), port) is False, "bound but not listening"
        sock.listen()
        assert namespace_listens(os.getpid(), port) is True
    assert namespace_listens(2**22 + 7, port) is None, "no such process: nothing can be told"
