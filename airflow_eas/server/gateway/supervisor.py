"""The HAProxy master process that ``eas server`` starts, reloads and adopts.

Changes of topology are applied by a hitless master-worker reload (SIGUSR2 to the
master); changes of weight or admin state go through the runtime API, with no reload
and no lost request. HAProxy runs in its own session so it keeps serving while the
control plane restarts; a restarted control plane adopts it through its pid file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from airflow_eas.errors import EasError
from airflow_eas.server.gateway.config import DEFAULT_MAX_BODY, GatewayConfig, read_map
from airflow_eas.server.gateway.runtime import MasterCli
from airflow_eas.server.gateway.state import GatewayState, route_key, setting_commands


@dataclass(frozen=True)
class GatewayTimings:
    wait: float = 15.0  # start, reload, old workers stopping: each waited for at most this long
    poll: float = 0.02  # how often a wait looks again
    stop: float = 10.0  # SIGTERM to a gone master


class Gateway:
    """Owns one HAProxy master process and its config under ``data_dir/gateway``."""

    def __init__(
        self, data_dir: Path, *, host: str, port: int, log_port: int, timings: GatewayTimings | None = None,
        max_body: int = DEFAULT_MAX_BODY, log_secret: str = "",
    ) -> None:
        if shutil.which("haproxy") is None:
            raise EasError("HAProxy is not installed (the gateway): apt-get install haproxy")
        self.dir = data_dir / "gateway"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.log_port = host, port, log_port
        self.t = timings or GatewayTimings()
        # per-request logs feed the metrics; off only to measure what they cost (bench/gateway_bench.py)
        request_log = os.environ.get("EAS_GATEWAY_REQUEST_LOG", "on") != "off"
        self.config = GatewayConfig(self.dir, host, port, log_port, request_log, max_body, log_secret)
        self.cfg = self.config.cfg
        self.pidfile = self.dir / "haproxy.pid"
        self.master_sock = self.dir / "master.sock"
        self.cli = MasterCli(self.master_sock)
        self._proc: subprocess.Popen | None = None
        # per route, how many requests per thousand are logged (absent: all); see set_sampling
        self.sampling: dict[str, int] = read_map(self.config.sample_map)
        self._applied: GatewayState | None = None
        self.restarts = 0

    # -- process -------------------------------------------------------------------------

    @staticmethod
    def running_in(data_dir: Path) -> bool:
        """Whether an HAProxy started for this data dir still runs (to be adopted)."""
        try:
            pid = int((data_dir / "gateway" / "haproxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return _is_haproxy(pid)

    @property
    def master_pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        if not self.running_in(self.dir.parent):
            return None
        return int(self.pidfile.read_text().split()[0])

    def alive(self) -> bool:
        return self.master_pid is not None

    def ensure_running(self, state: GatewayState) -> bool:
        """Start HAProxy from ``state`` if it is not running (or adopt the one that is). True if started."""
        if self.alive():
            if self._applied is None:
                self._adopt(state)
            return False
        self._write(state)
        self._validate()
        for path in (self.config.admin_sock, self.master_sock):
            path.unlink(missing_ok=True)
        log = open(self.dir / "haproxy.log", "ab")
        self._proc = subprocess.Popen(
            ["haproxy", "-W", "-S", str(self.master_sock), "-f", str(self.cfg), "-p", str(self.pidfile)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        self._wait_for(lambda: self.cli.worker_pid() is not None, "HAProxy to start")
        self._applied = state
        return True

    def _adopt(self, state: GatewayState) -> None:
        """After a restart of the control plane: reload only if the running config differs."""
        current = self.cfg.read_text() if self.cfg.exists() else ""
        if current == self.render(state):
            self._applied = state  # it already serves exactly this
        else:
            self._applied = GatewayState()
            self.apply(state)

    def stop(self) -> None:
        pid = self.master_pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.t.stop
        while time.monotonic() < deadline and _is_haproxy(pid):
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(self.t.poll)
        self._proc = None
        self._applied = None

    # -- applying the desired state ----------------------------------------------------------

    def apply(self, state: GatewayState) -> None:
        applied = self._applied
        if applied is None:
            raise EasError("gateway is not running")
        if applied.topology() != state.topology():
            self._write(state)
            self._validate()
            self._reload()
        else:
            commands = setting_commands(applied, state)
            if commands:
                self.runtime(commands)
                self._write(state)
        self._applied = state

    def set_sampling(self, keep: dict[str, int]) -> None:
        """Log only ``keep[route]`` of every 1000 requests of a busy route (1000 or absent: all).

        Per-request logs are what the metrics are made of, and at the gateway's full speed they
        would cost it a third of its throughput; a sample of a busy route costs next to nothing
        and, weighted back, gives the same counts and percentiles.
        """
        verb = {True: "set", False: "add"}
        sample_map = self.config.sample_map
        commands = [f"{verb[route in self.sampling]} map {sample_map} {route_key(route)} {n}"
                    for route, n in keep.items()]
        if commands:
            self.runtime(commands)
            self.sampling.update(keep)
            self.config.write_sampling(self.sampling)

    def runtime(self, commands: list[str]) -> str:
        """Send commands to the current worker through the master CLI (see runtime.py)."""
        return self.cli.run(commands)

    def sessions(self) -> dict[tuple[str, str], int]:
        """Current in-flight requests per (backend, server)."""
        return self.cli.sessions()

    def render(self, state: GatewayState) -> str:
        return self.config.render(state)

    # -- internals ---------------------------------------------------------------------------

    def _reload(self) -> None:
        # the master's CLI socket is briefly gone while a previous reload re-executes the master: without
        # the current worker's pid we could not tell the new worker from the old one
        old: int | None = None

        def current_known() -> bool:
            nonlocal old
            old = self.cli.worker_pid()
            return old is not None

        self._wait_for(current_known, "HAProxy's current worker to answer")
        pid = self.master_pid
        if pid is None:
            raise EasError("gateway is not running")
        os.kill(pid, signal.SIGUSR2)
        self._wait_for(lambda: (w := self.cli.worker_pid()) is not None and w != old, "HAProxy to reload")
        # the old worker keeps accepting until the master tells it to stop: until then a new connection may
        # still meet the old config (a missing backend or server)
        self._wait_for(self.cli.old_workers_stopping, "HAProxy's old workers to stop accepting")

    def _wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.t.wait
        while time.monotonic() < deadline:
            if predicate():
                return
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(self.t.poll)
        tail = _tail(self.dir / "haproxy.log", 5)
        raise EasError(f"timed out waiting for {what}; haproxy.log ends: {tail}")

    def _validate(self) -> None:
        res = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True)
        if res.returncode != 0:
            raise EasError(f"generated gateway config is invalid: {(res.stderr or res.stdout).strip()[-500:]}")

    def _write(self, state: GatewayState) -> None:
        self.config.write(state, self.sampling)


def _is_haproxy(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return any("haproxy" in part for part in proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
