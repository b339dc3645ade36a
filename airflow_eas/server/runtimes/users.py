"""Who the instances of a service run as (the process runtime).

Where the server runs as root, every service gets a uid of its own, with a group of the same
number, as systemd's ``DynamicUser=`` gives each unit one: taken from a range no distribution
assigns, needing no passwd entry (``setuid`` does not ask for one), recorded in the store with
the service (the same uid for its versions, restarts and the server's restarts, so its files
stay its own) and freed when the service is deleted. A uid of its own is what keeps one
service's instances out of another's ``/proc/PID/environ`` (tokens, secrets), work folder,
cache and control groups: one shared user would let any instance read all of them.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import psutil

from airflow_eas.errors import DeployFailed

# systemd.io/UIDS-GIDS leaves 60578-61183 unassigned: above regular (1000-60000) and homed users,
# below DynamicUser= (61184-65519); container ranges start at 524288
SERVICE_UIDS = range(60578, 61184)

# (service, candidate uids) -> the uid recorded for the service, or None when no candidate is free
Allocate = Callable[[str, Iterable[int]], "int | None"]


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str  # USER and LOGNAME of the instance, and what messages call it


class InstanceUsers:
    """The server's own user for every instance (a server that is not root, or ``--instance-user root``)."""

    def identity(self, service: str) -> Identity | None:
        return None


class SharedUser(InstanceUsers):
    """One named user for every service's instances (``--instance-user NAME``)."""

    def __init__(self, name: str) -> None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise DeployFailed(f"--instance-user {name!r}: no such user") from None
        self._identity = Identity(entry.pw_uid, entry.pw_gid, entry.pw_name)

    def identity(self, service: str) -> Identity | None:
        return self._identity


class ServiceUsers(InstanceUsers):
    """A uid of its own per service, from ``uids``, recorded through ``allocate``."""

    def __init__(self, allocate: Allocate, uids: range = SERVICE_UIDS) -> None:
        self.allocate, self.uids = allocate, uids

    def identity(self, service: str) -> Identity | None:
        uid = self.allocate(service, self._free())
        if uid is None:
            raise DeployFailed(
                f"service {service!r}: every instance uid from {self.uids[0]} to {self.uids[-1]} is taken (one per "
                "service): delete services, or start the server with --instance-user NAME to share one user"
            )
        return Identity(uid, uid, f"eas-{uid}")

    def _free(self) -> Iterator[int]:
        """Uids of the range that no account, group or running process has (read lazily: a service that
        already has its uid never pays for the process scan)."""
        running: set[int] | None = None
        for uid in self.uids:
            if _known_id(uid):
                continue
            if running is None:
                running = _running_uids()
            if uid not in running:
                yield uid


def instance_users(wanted: str, allocate: Allocate) -> InstanceUsers:
    """``auto``: a uid per service where the server runs as root, else the server's user; ``root`` or empty:
    the server's user; any other value: that user for every instance."""
    if wanted in ("", "root") or (wanted == "auto" and os.geteuid() != 0):
        return InstanceUsers()
    if wanted == "auto":
        return ServiceUsers(allocate)
    return SharedUser(wanted)


def _known_id(number: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(number)
            return True
        except KeyError:
            pass
    return False


def _running_uids() -> set[int]:
    uids: set[int] = set()
    for proc in psutil.process_iter(["uids"]):
        if proc.info["uids"] is not None:
            uids.update(proc.info["uids"])
    return uids
