"""`DockerRuntime.usage`: a container's CPU and memory from `docker stats`, as the series sampler reads them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.docker.conftest import BASE_IMAGE

pytestmark = pytest.mark.docker

BUSY = "x = bytearray(96 * 2**20)\nwhile True: pass"


def test_a_busy_container_shows_cpu_and_memory(docker_client, base_image, tmp_path: Path) -> None:
    from airflow_eas.server.runtimes.docker import DockerRuntime

    runtime = DockerRuntime(tmp_path, client=docker_client)
    busy = docker_client.containers.run(BASE_IMAGE, ["python3", "-c", BUSY], detach=True)
    idle = docker_client.containers.run(BASE_IMAGE, ["sleep", "60"], detach=True)
    try:
        time.sleep(1.0)
        for c in (busy, idle):
            runtime.usage(c.id)  # CPU is the share between two readings
        time.sleep(2.0)
        used, rested = runtime.usage(busy.id), runtime.usage(idle.id)
        assert used is not None
        assert rested is not None
        assert used.memory_bytes > 96 * 2**20 > rested.memory_bytes
        assert used.cpu_percent > 5 > rested.cpu_percent
    finally:
        for c in (busy, idle):
            c.remove(force=True)
    assert runtime.usage(busy.id) is None  # gone: nothing to read
