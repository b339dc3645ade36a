"""The process runtime's port contract: a command must listen on $PORT, and is told so when it does not."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow_eas.server.app import ControlPlane, ServerConfig
from airflow_eas.server.embedded import free_port
from airflow_eas.server.reconciler import Timings
from tests.conftest import wait_until


def test_a_command_that_ignores_port_fails_naming_port(tmp_path: Path) -> None:
    # as the server's user, as the embedded servers of the tests run instances (the venv is not others')
    cp = ControlPlane(ServerConfig(tmp_path, free_port(), free_port(), instance_user="root"),
                      Timings(startup_timeout=1.5, failures_to_fail=1))
    cp.start()
    try:
        own = free_port()
        cp.create({"name": "own_port", "containers": [{
            "image": "local", "command": f"{sys.executable} -m http.server {own} --bind 127.0.0.1", "port": 8000}]})
        info = wait_until(lambda: (d := cp.describe("own_port"))["status"] == "Failed" and d, 30, "Failed")
        assert "not ready after 2 s" in info["reason"], info["reason"]
        assert "the command must listen on the port given in $PORT" in info["reason"], info["reason"]
    finally:
        cp.shutdown()
