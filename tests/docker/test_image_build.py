"""`eas image build`: the prebuilt images from the files shipped in the package, and what it says when it cannot."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.conftest import model_server_image


def eas_image_build(*names: str, env: dict[str, str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_eas.cli", "image", "build", *names], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("eas: "), res.stderr
    return lines[0]


def bin_with(tmp_path: Path, *commands: str) -> str:
    """A PATH holding only ``commands`` (those found here)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for command in commands:
        found = shutil.which(command)
        if found:
            (folder / command).symlink_to(found)
    return str(folder)


def test_an_unknown_image_is_named() -> None:
    line = one_line_error(eas_image_build("model-server", "modelserver"))
    assert "unknown image 'modelserver'" in line
    assert "model-server-pmml" in line


def test_without_the_docker_command_it_says_so(tmp_path: Path) -> None:
    line = one_line_error(eas_image_build(env={"PATH": bin_with(tmp_path)}))
    assert "the docker command is not installed" in line


def test_without_an_engine_it_says_how_to_start_one(tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("the docker command is not installed (make docker installs docker.io)")
    line = one_line_error(eas_image_build(env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}))
    assert "no Docker engine answers" in line
    assert "start dockerd" in line


def test_without_debootstrap_a_missing_base_is_named(docker_client, tmp_path: Path) -> None:
    missing = f"airflow-eas/base:missing-{secrets.token_hex(4)}"
    line = one_line_error(eas_image_build(env={"PATH": bin_with(tmp_path, "docker"), "EAS_BASE_IMAGE": missing}))
    assert f"debootstrap is not installed and the base image {missing} is missing" in line


def test_it_builds_the_model_server_from_the_package(docker_client) -> None:
    res = eas_image_build("model-server", timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "built (or up to date): model-server" in res.stdout
    image = docker_client.images.get(model_server_image())
    # the image runs this checkout's model server: the tag is the hash of what it runs
    out = docker_client.containers.run(image.id, ["python", "-c", "import airflow_eas.serving, sys; print('ok')"],
                                       remove=True, network_mode="none")
    assert out.strip() == b"ok"
