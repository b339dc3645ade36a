"""``metadata.cpu`` and ``metadata.memory`` for local processes, as the Docker runtime gets them.

One control group per instance where the host lets us create them: cgroup v2
(``memory.max``, ``cpu.max``) or v1 (``memory.limit_in_bytes``, ``cpu.cfs_quota_us``). The
child joins its group before it executes the instance, so nothing it starts escapes; a
kill for memory is read back from the group's OOM counter and named in the reason.
Without cgroups: ``RLIMIT_DATA`` (heap and anonymous memory, what grows) bounds memory and
a lower scheduling priority stands in for a CPU share.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
FALLBACK_NICE = 10  # no CPU quota without cgroups: yield to the control plane and the gateway


@dataclass(frozen=True)
class Limits:
    cpu: float | None  # cores
    memory_mib: int | None

    @property
    def any(self) -> bool:
        return self.cpu is not None or self.memory_mib is not None


class InstanceGroup:
    """The control group(s) of one instance, or the rlimit fallback where there are none."""

    def __init__(self, instance_id: str, limits: Limits, root: Path = CGROUP_ROOT) -> None:
        self.limits = limits
        self.dirs: list[Path] = []
        if not limits.any:
            return
        if (root / "cgroup.controllers").exists():
            self._make_v2(root, instance_id)
        elif (root / "memory").is_dir() and (root / "cpu").is_dir():
            self._make_v1(root, instance_id)

    @property
    def enforced_by(self) -> str:
        return "cgroup" if self.dirs else "rlimit"

    def _make_v2(self, root: Path, instance_id: str) -> None:
        parent = root / "eas"
        with contextlib.suppress(OSError):
            parent.mkdir(exist_ok=True)
            (root / "cgroup.subtree_control").write_text("+memory +cpu")
            (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            group = parent / instance_id
            group.mkdir(exist_ok=True)
            if self.limits.memory_mib is not None:
                (group / "memory.max").write_text(str(self.limits.memory_mib * 1024 * 1024))
                (group / "memory.swap.max").write_text("0")
            if self.limits.cpu is not None:
                (group / "cpu.max").write_text(f"{int(self.limits.cpu * CPU_PERIOD_US)} {CPU_PERIOD_US}")
            self.dirs = [group]

    def _make_v1(self, root: Path, instance_id: str) -> None:
        made = []
        try:
            if self.limits.memory_mib is not None:
                group = root / "memory" / "eas" / instance_id
                group.mkdir(parents=True, exist_ok=True)
                limit = str(self.limits.memory_mib * 1024 * 1024)
                (group / "memory.limit_in_bytes").write_text(limit)
                with contextlib.suppress(OSError):  # no swap accounting on this kernel
                    (group / "memory.memsw.limit_in_bytes").write_text(limit)
                made.append(group)
            if self.limits.cpu is not None:
                group = root / "cpu" / "eas" / instance_id
                group.mkdir(parents=True, exist_ok=True)
                (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(int(self.limits.cpu * CPU_PERIOD_US)))
                made.append(group)
        except OSError:
            return  # not ours to create (a read-only cgroup mount): the rlimit fallback applies
        self.dirs = made

    def restrict_to(self, gid: int) -> None:
        """Only the instance's own group may look inside its control groups (what runs there, what it uses):
        the instance reads its limits, as runtimes that size themselves to them do; other services see
        nothing. The files stay root's: the instance cannot raise its own limits."""
        for group in self.dirs:
            os.chown(group, -1, gid)
            group.chmod(0o750)

    def enter(self) -> None:
        """In the child, before it executes the instance (as root, before privileges are dropped)."""
        for group in self.dirs:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        if self.dirs or not self.limits.any:
            return
        if self.limits.memory_mib is not None:
            size = self.limits.memory_mib * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (size, size))
        if self.limits.cpu is not None:
            os.nice(FALLBACK_NICE)

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of this group for memory."""
        for group in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (group / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
        return False

    def remove(self) -> None:
        """Remove the groups (once nothing runs in them)."""
        for group in self.dirs:
            with contextlib.suppress(OSError):
                group.rmdir()
