"""Helpers for the model-server tests: real processes over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | str | None = None, timeout: float = 10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if isinstance(body, str) else body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def post(port: int, body, path: str = "/", timeout: float = 10):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    status, out = request(port, "POST", path, body, timeout)
    return status, out


class Served:
    """One ``python -m airflow_eas.serving`` process."""

    def __init__(self, spec: dict, workdir: Path, env: dict | None = None, execution: str | None = None):
        self.port = free_port()
        self.spec_file = workdir / f"spec-{self.port}.json"
        self.spec_file.write_text(json.dumps(spec))
        self.stderr_file = workdir / f"stderr-{self.port}.log"
        full_env = {**os.environ, "EAS_CACHE_DIR": str(workdir / "cache"), **(env or {})}
        cmd = [
            sys.executable,
            "-m",
            "airflow_eas.serving",
            "--spec",
            str(self.spec_file),
            "--port",
            str(self.port),
        ]
        if execution:
            cmd += ["--execution", execution]
        self._err = open(self.stderr_file, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=self._err)

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text()

    def ready_status(self):
        try:
            status, body = request(self.port, "GET", "/ready", timeout=2)
            return status, json.loads(body)
        except OSError:
            return None, None

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode} before ready:\n{self.stderr}")
            if self.ready_status()[0] == 200:
                return
            time.sleep(0.02)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.stderr}")

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def post(self, body, path: str = "/", timeout: float = 10):
        return post(self.port, body, path, timeout)

    def metrics(self) -> dict:
        return json.loads(request(self.port, "GET", "/metrics")[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def write_processor(folder: Path, source: str, name: str = "proc.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source)
    return path


def custom_spec(name: str, path, entry: str = "proc.py", mainclass: str = "Proc", **extra) -> dict:
    return {
        "name": name,
        "processor_path": str(path),
        "processor_entry": entry,
        "processor_mainclass": mainclass,
        "processor_type": "python",
        **extra,
    }
