"""The process runtime: each instance is a local child process.

Started without a shell in its own session (so it outlives a control-plane crash and
can be adopted again), stdout and stderr appended to its log file. The handle is
``pid:create_time``, which tells a re-used pid from the original process.

An instance gets only what its spec gives it (plus ``PORT`` and what the model server
needs), never the server's own environment, and carries ``EAS_OWNER`` so that a
restarted server finds every process it started, also one whose handle was never saved.
Where the server runs as root, each service's instances run as a uid of the service's own
(``users``), so they cannot read another service's environment or files. ``metadata.cpu``
and ``memory`` are enforced (``limits``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil

from airflow_eas.errors import DeployFailed
from airflow_eas.server.runtimes.base import ExitStatus, LaunchRequest, Runtime, Usage
from airflow_eas.server.runtimes.exits import ExitWatcher
from airflow_eas.server.runtimes.limits import InstanceGroup, Limits
from airflow_eas.server.runtimes.users import Identity, InstanceUsers

OWNER_ENV = "EAS_OWNER"  # marks every process a server started, with that server's id
# what a program needs from the host to start at all; nothing else of the server's environment passes
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH")


class ProcessRuntime(Runtime):
    name = "process"
    instant_poll = True  # a waitpid or a look at the process table

    def __init__(self, owner: str = "", users: InstanceUsers | None = None) -> None:
        self.owner = owner
        self.users = users or InstanceUsers()
        self._children: dict[int, subprocess.Popen] = {}
        self._watched: dict[int, psutil.Process] = {}  # psutil measures CPU between two calls on one object
        self._groups: dict[int, InstanceGroup] = {}
        self.exits = ExitWatcher()

    def on_exit(self, callback: Callable[[], None]) -> bool:
        self.exits.start(callback)
        return True

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
        try:
            return shlex.split(container.command)
        except ValueError as exc:  # validated when accepted; a spec stored by an older server may not be
            raise DeployFailed(f"containers[0].command cannot be split into arguments ({exc})") from None

    def environment(self, request: LaunchRequest, identity: Identity | None = None) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env["HOME"] = str(request.workdir)
        if identity is not None:  # a uid without a passwd entry: getpass.getuser() reads these
            env["USER"] = env["LOGNAME"] = identity.name
        env.update(request.env)
        env[OWNER_ENV] = self.owner
        return env

    def launch(self, request: LaunchRequest) -> str:
        argv = self.command(request)
        identity = self.users.identity(request.spec.name)
        self._hand_over_files(request, argv[0], identity)
        metadata = request.spec.metadata
        group = InstanceGroup(request.instance_id, Limits(metadata.cpu, metadata.memory))
        if identity is not None:
            group.restrict_to(identity.gid)
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(request.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.environment(request, identity), cwd=str(request.workdir), start_new_session=True,
                    preexec_fn=self._child_setup(group, identity),  # cgroup entry and setuid: before exec
                )
            except (OSError, subprocess.SubprocessError) as exc:
                group.remove()
                raise DeployFailed(f"cannot start {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}") from None
        self._children[proc.pid] = proc
        self._groups[proc.pid] = group
        self.exits.watch(proc.pid)
        return f"{proc.pid}:{_start_time(proc.pid)}"

    @staticmethod
    def _child_setup(group: InstanceGroup, identity: Identity | None) -> Callable[[], None]:
        def setup() -> None:  # in the child, between fork and exec: as root until the last line
            group.enter()
            if identity is not None:
                os.setgroups([])
                os.setgid(identity.gid)
                os.setuid(identity.uid)

        return setup

    @staticmethod
    def _hand_over_files(request: LaunchRequest, program: str, identity: Identity | None) -> None:
        """The instance's user owns its work folder (its own spec inside, 0600) and its cache."""
        if identity is None:
            return
        resolved = shutil.which(program, path=os.environ.get("PATH")) or program
        if not _reachable_by_others(Path(resolved)):
            raise DeployFailed(
                f"the instance user {identity.name!r} cannot execute {resolved} (a folder above it is closed "
                "to other users): install it where others can read it, or start the server with --instance-user "
                "root to run instances as the server's user"
            )
        if not _reachable_by_others(request.workdir.parent):
            raise DeployFailed(
                f"the instance user {identity.name!r} cannot reach its work folder {request.workdir} (a folder "
                "above the data dir is closed to other users): put the data dir where others may pass through"
            )
        uid, gid = identity.uid, identity.gid
        cache = request.env.get("EAS_CACHE_DIR")
        for folder in (request.workdir, Path(cache) if cache else None):
            if folder is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            if folder.stat().st_uid != uid:  # what an instance wrote under an earlier user is still its own
                _chown_tree(folder, uid, gid)
        for file in request.workdir.iterdir():
            if file.is_file():
                os.chown(file, uid, gid)

    def poll(self, handle: str) -> ExitStatus | None:
        pid, started = _parse(handle)
        proc = self._children.get(pid)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return None
            del self._children[pid]
            return self._ended(pid, ExitStatus(code))
        if _start_time(pid) == started and not _zombie(pid):
            return None
        return self._ended(pid, ExitStatus(None))

    def _ended(self, pid: int, status: ExitStatus) -> ExitStatus:
        group = self._groups.pop(pid, None)
        if group is not None:
            if group.oom_killed():
                status.reason = f"killed for memory: it went over metadata.memory ({group.limits.memory_mib} MiB)"
            group.remove()
        return status

    def terminate(self, handle: str) -> None:
        self._signal(handle, signal.SIGTERM)

    def kill(self, handle: str) -> None:
        self._signal(handle, signal.SIGKILL)

    def listens(self, handle: str, port: int) -> bool | None:
        return pids_listen([_parse(handle)[0]], port)

    def adopt(self, handle: str) -> bool:
        if not handle:
            return False
        alive = self.poll(handle) is None
        if alive:
            self.exits.watch(_parse(handle)[0])
        return alive

    def end_unknown(self, known: set[str]) -> list[str | int]:
        """Kill every process this server started whose handle the store does not hold (launched just before a
        crash, before the handle was saved); returns their pids."""
        if not self.owner:
            return []
        known_pids = {_parse(h)[0] for h in known if h}
        killed: list[str | int] = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.pid in known_pids or proc.environ().get(OWNER_ENV) != self.owner:
                    continue
                if os.getpgid(proc.pid) == proc.pid:  # the session leader: its group goes with it
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                killed.append(proc.pid)
        return killed

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
        if not handle:
            return
        pid, started = _parse(handle)
        if pid in self._children or _start_time(pid) == started:
            try:
                os.killpg(pid, sig)  # the instance leads its own session: reach its children too
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, sig)


def pids_listen(pids: list[int], port: int) -> bool | None:
    """Whether one of ``pids`` or their children listens on ``port`` (None: their sockets cannot be seen)."""
    try:
        procs = [psutil.Process(pid) for pid in pids]
        procs += [child for proc in procs for child in proc.children(recursive=True)]
    except psutil.Error:
        return None
    for proc in procs:
        try:
            if any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in proc.net_connections("tcp")):
                return True
        except psutil.AccessDenied:
            return None
        except psutil.Error:
            continue
    return False


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(folder, name), uid, gid)


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach and execute ``path`` (every folder above it searchable)."""
    try:
        path = path.resolve()
        if not os.stat(path).st_mode & 0o001:
            return False
        return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)
    except OSError:
        return True  # a missing program: Popen says so more clearly


def _parse(handle: str) -> tuple[int, str]:
    pid, _, started = handle.partition(":")
    return int(pid), started


def _start_time(pid: int) -> str:
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
