"""HAProxy's master CLI: the one socket every runtime command goes through.

Commands are prefixed ``@1`` (the current worker) and sent through the master, never
through the workers' own stats socket: during a reload that may still reach the old
worker, and a weight set there would be lost with it. ``@!<pid>`` reaches one old
worker, whose ``show info`` says ``Stopping: 1`` once it no longer accepts.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

SOCKET_TIMEOUT_S = 5.0
REBIND_WAIT_S = 2.0  # the master re-binds its CLI socket on every reload


class MasterCli:
    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, payload: str, timeout: float = SOCKET_TIMEOUT_S) -> str:
        return unix_call(self.path, payload, timeout)

    def run(self, commands: list[str]) -> str:
        """Send commands to the current worker (one connection, one batch)."""
        return self.call("".join(f"@1 {c}; " for c in commands) + "quit\n")

    def worker_pid(self) -> int | None:
        try:
            info = self.run(["show info"])
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    def sessions(self) -> dict[tuple[str, str], int]:
        """Current in-flight requests per (backend, server); empty when the socket does not answer."""
        try:
            text = self.run(["show stat -1 4 -1"])
        except OSError:
            return {}
        out: dict[tuple[str, str], int] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            cols = line.split(",")
            if len(cols) > 4 and cols[4].isdigit():
                out[(cols[0], cols[1])] = int(cols[4])
        return out

    def old_workers_stopping(self) -> bool:
        """Whether every old worker has stopped accepting (they may still finish requests)."""
        try:
            procs = self.call("show proc; quit\n").splitlines()
        except OSError:
            return False
        for pid in _old_worker_pids(procs):
            try:
                info = self.call(f"@!{pid} show info; quit\n", timeout=1.0)
            except OSError:
                continue  # gone already
            if "Stopping: 1" not in info and "Pid:" in info:
                return False
        return True


def _old_worker_pids(procs: list[str]) -> list[str]:
    old = procs[procs.index("# old workers") + 1:] if "# old workers" in procs else []
    pids = []
    for line in old:
        if line.startswith("#"):
            break
        pid = line.split()[0] if line.split() else ""
        if pid.isdigit():
            pids.append(pid)
    return pids


def unix_call(path: Path, payload: str, timeout: float = SOCKET_TIMEOUT_S) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        deadline = time.monotonic() + REBIND_WAIT_S
        while True:  # wait out the moment of a reload's re-bind
            try:
                sock.connect(str(path))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        sock.sendall(payload.encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
