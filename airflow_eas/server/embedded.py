"""Start ``eas server`` as a child process: for tests, the demo and notebooks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from airflow_eas.errors import EasError, PlatformUnavailable
from airflow_eas.platform.client import EasClient
from airflow_eas.server.gateway import Gateway
from airflow_eas.server.runtimes.process import ProcessRuntime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedServer:
    data_dir: Path
    api_port: int
    gateway_port: int
    process: subprocess.Popen | None = None
    runtime: str = "process"
    # who instances run as: the server's user unless asked (a test's interpreter may sit in a folder other
    # users cannot enter, as /root/.pyenv here); "auto" gives each service a uid of its own when this is root
    instance_user: str | None = "root"  # None: the server's default (a server of an older version has no flag)
    env: dict[str, str] | None = None  # extra environment of the server process

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin_token").read_text().strip()

    @property
    def client(self) -> EasClient:
        return EasClient(self.endpoint, self.token)

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        log = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_eas.cli", "server", "--data-dir", str(self.data_dir),
             "--api-port", str(self.api_port), "--gateway-port", str(self.gateway_port), "--runtime", self.runtime,
             *(["--instance-user", self.instance_user] if self.instance_user is not None else [])],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env={**os.environ, **(self.env or {})},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EasError(f"eas server exited with code {self.process.returncode}: {self.log_tail()}")
            try:
                if (self.data_dir / "admin_token").exists():
                    EasClient(self.endpoint, self.token, timeout=2).gateway_url()  # a readiness call
                    return self
            except PlatformUnavailable:
                pass
            time.sleep(0.1)
        raise EasError(f"eas server did not answer within {timeout:.0f} s: {self.log_tail()}")

    def kill(self) -> None:
        """kill -9 the control plane only (instances and HAProxy keep running)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 40.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reap_leftovers()

    def _reap_leftovers(self) -> None:
        """After a crash-restart test, make sure no HAProxy of ours outlives the server."""
        if Gateway.running_in(self.data_dir):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.data_dir / "gateway" / "haproxy.pid").read_text().split()[0]), signal.SIGTERM)
        # instances of a server that was killed and never restarted (a test that failed half-way)
        with contextlib.suppress(sqlite3.Error):
            db = sqlite3.connect(self.data_dir / "state.db")
            owner = db.execute("SELECT value FROM settings WHERE key='server_id'").fetchone()
            db.close()
            if owner:
                ProcessRuntime(owner=owner[0]).end_unknown(set())  # every process it started, recorded or not

    def log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join((self.data_dir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_embedded(
    data_dir: Path, api_port: int = 0, gateway_port: int = 0, runtime: str = "process"
) -> EmbeddedServer:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedServer(data_dir, api_port or free_port(), gateway_port or free_port(), runtime=runtime).start()
