"""Fixtures of the docker runtime's tests: a Docker engine, the images, an `eas server --runtime docker`.

Each one skips (with the reason) where its piece cannot be had: no engine answering
(`make test` starts one with scripts/ensure-dockerd.sh, which needs root), an image
that cannot be built (debootstrap needs Debian's mirror, the model server a wheelhouse).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_eas.errors import EasError
from airflow_eas.server.embedded import EmbeddedServer, start_embedded
from airflow_eas.server.image.build import build, source_tag
from tests.conftest import APPS, deleting_new_services

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "airflow-eas/base:bookworm"
MODEL_SERVER_REPO = "airflow-eas/model-server"
WEB_DEMO_IMAGE = "airflow-eas/web-demo:latest"


def model_server_image() -> str:
    """This checkout's model-server image, by its source tag: other checkouts may rebuild :latest meanwhile."""
    return f"{MODEL_SERVER_REPO}:{source_tag()}"


@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine answers ({str(exc)[:120]}); `make test` starts one with "
                    "scripts/ensure-dockerd.sh (needs root)")
    return client


def build_or_skip(target: str, image: str) -> str:
    """`eas image build TARGET`, the way make image and a pip-installed server build; skips saying why not."""
    try:
        build([target])
    except EasError as exc:
        pytest.skip(f"cannot build {image} (eas image build {target}): {exc.message}")
    return image


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    return build_or_skip("base", BASE_IMAGE)


@pytest.fixture(scope="session")
def model_server_images(docker_client) -> str:
    """The model server images of every built-in processor (PMML's included); returns the main one."""
    return build_or_skip("model-server-pmml", model_server_image())


@pytest.fixture(scope="session")
def web_demo_image(docker_client) -> str:
    return build_or_skip("web-demo", WEB_DEMO_IMAGE)


@pytest.fixture(scope="session")
def docker_session(tmp_path_factory: pytest.TempPathFactory, base_image: str,
                   s3_server: dict[str, str]) -> Iterator[EmbeddedServer]:
    """`eas server --runtime docker`, with the test object store as its OSS endpoint."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (make test installs it with apt-get)")
    with pytest.MonkeyPatch.context() as env:
        for key, value in s3_server.items():
            env.setenv(key, value)
        env.setenv("EAS_MODEL_SERVER_IMAGE", model_server_image())
        server = start_embedded(tmp_path_factory.mktemp("eas-docker"), runtime="docker")
    try:
        yield server
    finally:
        server.stop()
        remove_containers_of(server)


@pytest.fixture
def docker_server(docker_session: EmbeddedServer) -> Iterator[EmbeddedServer]:
    """The session's docker server; what the test created is deleted, pass or fail."""
    with deleting_new_services(docker_session) as server:
        yield server


def remove_containers_of(server: EmbeddedServer) -> None:
    """What a failed test may have left behind: every container of this server's data dir."""
    import docker

    client = docker.from_env()
    for c in client.api.containers(all=True, filters={"label": f"eas.data_dir={server.data_dir.resolve()}"}):
        client.api.remove_container(c["Id"], force=True, v=True)


def docker_echo_spec(name: str, *, instances: int = 1, **env: str) -> dict:
    """tests/apps/echo_app.py in the base image, its folder mounted at /app."""
    return {
        "name": name,
        "containers": [{
            "image": BASE_IMAGE,
            "command": "python3 /app/echo_app.py",
            "port": 8000,
            "env": [{"name": k, "value": str(v)} for k, v in env.items()],
        }],
        "storage": [{"mount_path": "/app", "local": {"path": str(APPS), "readOnly": True}}],
        "metadata": {"instance": instances},
    }
