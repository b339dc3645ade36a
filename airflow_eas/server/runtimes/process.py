"""The process runtime: each instance is a local child process.

Started without a shell in its own session (so it outlives a control-plane crash and
can be adopted again), stdout and stderr appended to its log file. The handle is
``pid:starttime``, which tells a re-used pid from the original process.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from airflow_eas.errors import DeployFailed
from airflow_eas.server.runtimes.base import ExitStatus, LaunchRequest, Runtime, Usage


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}
        self._watched: dict[int, psutil.Process] = {}  # psutil measures CPU between two calls on one object

    def command(self, request: LaunchRequest) -> list[str]:
        spec = request.spec
        if spec.kind != "image":
            spec_file = request.workdir / "spec.json"
            return [sys.executable, "-m", "airflow_eas.serving", "--spec", str(spec_file)]
        container = spec.containers[0]  # type: ignore[index]
        if container.script:
            script = request.workdir / "script.sh"
            script.write_text(container.script)
            return ["/bin/sh", str(script)]
        if not container.command:
            raise DeployFailed(f"service {spec.name!r}: the process runtime needs containers[0].command")
        return shlex.split(container.command)

    def launch(self, request: LaunchRequest) -> str:
        argv = self.command(request)
        env = {**os.environ, **request.env}
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(request.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    cwd=str(request.workdir), start_new_session=True,
                )
            except OSError as exc:
                raise DeployFailed(f"cannot start {argv[0]!r}: {exc.strerror}") from None
        self._children[proc.pid] = proc
        return f"{proc.pid}:{_start_time(proc.pid)}"

    def poll(self, handle: str) -> ExitStatus | None:
        pid, started = _parse(handle)
        proc = self._children.get(pid)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return None
            del self._children[pid]
            return ExitStatus(code)
        return None if _start_time(pid) == started and not _zombie(pid) else ExitStatus(None)

    def terminate(self, handle: str) -> None:
        self._signal(handle, signal.SIGTERM)

    def kill(self, handle: str) -> None:
        self._signal(handle, signal.SIGKILL)

    def adopt(self, handle: str) -> bool:
        if not handle:
            return False
        return self.poll(handle) is None

    def usage(self, handle: str) -> Usage | None:
        """The instance and every process it started (it leads its own session)."""
        pid, started = _parse(handle)
        if _start_time(pid) != started:
            self._watched.pop(pid, None)
            return None
        try:
            leader = psutil.Process(pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.Error:
            return None
        cpu, memory = 0.0, 0
        for proc in tree:
            known = self._watched.setdefault(proc.pid, proc)
            try:
                cpu += known.cpu_percent(interval=None)  # 0.0 on the first call of a process
                memory += known.memory_info().rss
            except psutil.Error:
                self._watched.pop(proc.pid, None)
        for gone in [p for p, proc in self._watched.items() if not proc.is_running()]:
            del self._watched[gone]
        return Usage(round(cpu, 1), memory)

    def _signal(self, handle: str, sig: int) -> None:
        pid, started = _parse(handle)
        if pid in self._children or _start_time(pid) == started:
            try:
                os.killpg(pid, sig)  # the instance leads its own session: reach its children too
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, sig)


def _parse(handle: str) -> tuple[int, str]:
    pid, _, started = handle.partition(":")
    return int(pid), started


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
