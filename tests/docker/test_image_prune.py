"""Unused `:src-*` model-server images are pruned (at start, after a delete or an update), never one in use."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.spec import parse_spec
from tests.conftest import wait_running, wait_until
from tests.docker.conftest import BASE_IMAGE, docker_echo_spec, remove_containers_of

pytestmark = pytest.mark.docker


@pytest.fixture
def repo(docker_client, base_image: str) -> Iterator[str]:
    """A model-server repository of this test's own: the engine's real ones belong to other checkouts."""
    name = f"eas-prune-{secrets.token_hex(4)}/model-server"
    yield name
    for c in docker_client.api.containers(all=True, filters={"label": f"eas.test={name}"}):
        docker_client.api.remove_container(c["Id"], force=True)
    for r in (name, f"{name}-pmml"):
        for img in docker_client.api.images(name=r):
            docker_client.api.remove_image(img["Id"], force=True)


def build(docker_client, *tags: str) -> None:
    """A tiny image of its own id (the base image with a label), under ``tags``."""
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL eas.test.tag={tags[0]}\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True)
    for tag in tags:
        image.tag(*tag.rsplit(":", 1))


def tags(docker_client, repo: str) -> set[str]:
    return {t for r in (repo, f"{repo}-pmml") for img in docker_client.api.images(name=r) for t in img["RepoTags"]}


def image_spec(name: str, image: str, instances: int = 1) -> dict:
    spec = docker_echo_spec(name, instances=instances)
    spec["containers"][0]["image"] = image
    return spec


@pytest.fixture
def server(tmp_path: Path, repo: str, docker_client) -> Iterator[EmbeddedServer]:
    """`eas server --runtime docker` whose model-server image is in ``repo``, pruning at any age."""
    build(docker_client, f"{repo}:src-current")
    build(docker_client, f"{repo}:src-old")
    build(docker_client, f"{repo}-pmml:src-old")
    build(docker_client, f"{repo}:src-newest", f"{repo}:latest")
    build(docker_client, f"{repo}:src-held")
    # a container of someone else (any state) holds its image
    docker_client.api.create_container(f"{repo}:src-held", "true", labels={"eas.test": repo})
    srv = EmbeddedServer(tmp_path, free_port(), free_port(), runtime="docker",
                         env={"EAS_MODEL_SERVER_IMAGE": f"{repo}:src-current", "EAS_IMAGE_PRUNE_AGE": "0"}).start()
    try:
        yield srv
    finally:
        srv.stop()
        remove_containers_of(srv)


def test_unused_source_images_go_and_used_ones_stay(server: EmbeddedServer, repo: str, docker_client) -> None:
    # at start: what nothing needs goes; the server's own image, :latest's and a container's stay
    kept = {f"{repo}:src-current", f"{repo}:src-newest", f"{repo}:latest", f"{repo}:src-held"}
    wait_until(lambda: tags(docker_client, repo) == kept, 30, "the start's pruning")

    for tag in ("used", "gone", "stopped", "asset"):
        build(docker_client, f"{repo}:src-{tag}")
    client = server.client
    client.create(parse_spec(image_spec("prune_used", f"{repo}:src-used")))
    client.create(parse_spec(image_spec("prune_gone", f"{repo}:src-gone")))
    client.create(parse_spec(image_spec("prune_stopped", f"{repo}:src-stopped", instances=0)))
    client._call("POST", "/api/v2/assets", json={"name": "prune_asset", "type": "image", "uri": f"{repo}:src-asset"})
    wait_running(client, "prune_used")
    wait_running(client, "prune_gone")

    client.delete("prune_gone")  # its container is released, then its image is unused
    kept |= {f"{repo}:src-{tag}" for tag in ("used", "stopped", "asset")}
    wait_until(lambda: tags(docker_client, repo) == kept, 60, f"{repo}:src-gone to be pruned")

    build(docker_client, f"{repo}:src-next")
    kept.add(f"{repo}:src-next")
    spec = image_spec("prune_used", f"{repo}:src-next")
    client.modify(parse_spec(spec))  # a rolling update: the old version's container goes, then its image
    wait_until(lambda: tags(docker_client, repo) == kept - {f"{repo}:src-used"}, 90, f"{repo}:src-used to be pruned")
    info = wait_running(client, "prune_used")
    assert info.status == "Running"
    assert client.describe("prune_stopped").instances == 0
