"""``eas image build``: the docker runtime's images, built offline from the files shipped beside this module.

``build-image.sh`` (in this folder) is the one build recipe: debootstrap a Debian base, ``docker
import`` it, then ``docker build`` each image on it with wheels downloaded on the host. This
module checks what the recipe needs before it starts (the ``docker`` command, an engine that
answers, debootstrap where the base image is missing), so a missing piece is one clear line
instead of a half-done build, and runs it once per target. ``make image`` and the docker tests
call it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_eas.errors import DeployFailed, InvalidSpec, PlatformUnavailable

SCRIPT = Path(__file__).with_name("build-image.sh")
BASE_IMAGE = "airflow-eas/base:bookworm"
# what `eas image build NAME` builds (each builds what it stands on: the base, the model server)
TARGETS = {
    "model-server": "airflow-eas/model-server: the model server (sklearn, xgboost, lightgbm, onnx)",
    "model-server-pmml": "airflow-eas/model-server-pmml: the model server with Java and pypmml",
    "web-demo": "airflow-eas/web-demo: a FastAPI demo app, deployable as an image service",
    "base": f"{BASE_IMAGE}: the Debian base every image above stands on (debootstrap)",
    "postgres": "airflow-eas/postgres:15: Debian's PostgreSQL, for the compose stack",
    "airflow": "airflow-eas/airflow: Airflow with this package, for the compose stack (source checkout only)",
    "all": "model-server, model-server-pmml and web-demo (the default)",
    "compose": "what docker-compose.yaml runs: model-server, postgres and airflow",
}
DEFAULT = ("all",)


def build(names: Sequence[str] = DEFAULT, *, python: str | None = None) -> None:
    """Build ``names`` (``TARGETS``), skipping what is up to date; raise an ``EasError`` saying what is missing."""
    names = list(names) or list(DEFAULT)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise InvalidSpec(f"unknown image {', '.join(map(repr, unknown))}: choose from {', '.join(TARGETS)}")
    check_engine()
    check_debootstrap()
    for name in names:
        _run(name, python)


def source_tag() -> str:
    """``src-<hash>``: the tag of the model-server images this package's source builds (builds nothing)."""
    return subprocess.run(["bash", str(SCRIPT), "tag"], capture_output=True, text=True, check=True).stdout.strip()


def check_engine() -> None:
    if shutil.which("docker") is None:
        raise PlatformUnavailable("the docker command is not installed: install Docker (Debian: apt-get install "
                                  "docker.io) and start dockerd")
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired:
        raise PlatformUnavailable("the Docker engine did not answer `docker info` within 30 s") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        reason = _last_line(proc.stderr) or "no answer"
        raise PlatformUnavailable(f"no Docker engine answers ({reason}): start dockerd (the source tree's "
                                  "scripts/ensure-dockerd.sh does, as root) or point DOCKER_HOST at one")


def check_debootstrap() -> None:
    """debootstrap makes the base image, once: it is needed only while that image is missing."""
    base = os.environ.get("EAS_BASE_IMAGE") or BASE_IMAGE  # as build-image.sh reads it
    if shutil.which("debootstrap") is not None or _image_exists(base):
        return
    raise PlatformUnavailable(f"debootstrap is not installed and the base image {base} is missing: install "
                              "it (Debian: apt-get install debootstrap), it builds the base once")


def _image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def _run(name: str, python: str | None) -> None:
    """The recipe for one target; its progress lines go to stderr as they come, its last one names a failure."""
    env = {**os.environ, "PY": python or os.environ.get("PY") or sys.executable}
    proc = subprocess.Popen(["bash", str(SCRIPT), name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    last = ""
    for line in proc.stderr or ():
        sys.stderr.write(line)
        last = line.strip() or last
    if proc.wait() != 0:
        raise DeployFailed(f"building {name} failed: {last or f'build-image.sh exited {proc.returncode}'}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
