"""SQLite state of ``eas server``: the desired state (services, groups, leases) and
what runs (instances), so that a restarted server finds everything again.

One connection, guarded by one lock: the control plane is small and every write is
a few rows, so simplicity beats concurrency here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_eas.errors import Conflict, EasError, NotFound, RolloutAborted
from airflow_eas.platform.base import LEASE_HELD, LEASE_LAPSED, LEASE_REVOKED, GuardSettings, Lease

SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, version INTEGER NOT NULL, desired INTEGER NOT NULL,
    token TEXT NOT NULL, grp TEXT, failed_version INTEGER, reason TEXT NOT NULL DEFAULT '',
    ever_ready INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, version INTEGER NOT NULL, port INTEGER NOT NULL,
    handle TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, in_gateway INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, started_at REAL, ready_at REAL, state_since REAL NOT NULL,
    restart_at REAL);
CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, token TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL, service TEXT NOT NULL, weight INTEGER NOT NULL, PRIMARY KEY (grp, service));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, time REAL NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_of_service ON events(service, id);
CREATE TABLE IF NOT EXISTS leases (grp TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    name TEXT PRIMARY KEY, type TEXT NOT NULL, uri TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS service_uids (service TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE);
"""

# The lease as a dead-man's switch: the member traffic goes back to, the guard, why it was revoked.
LEASE_COLUMNS = {
    "stable": "TEXT",
    "guard": "TEXT",
    "ttl": "REAL",
    "state": f"TEXT NOT NULL DEFAULT '{LEASE_HELD}'",
    "reason": "TEXT NOT NULL DEFAULT ''",
}

# Instance states. `starting`: launched, readiness not yet seen. `running`: ready, serving.
# `backoff`: died, waiting to be launched again. `draining`: no new requests, in-flight ones finish.
# `stopping`: asked to exit, killed after the grace period.
STARTING, RUNNING, BACKOFF, DRAINING, STOPPING = "starting", "running", "backoff", "draining", "stopping"
ACTIVE_STATES = (STARTING, RUNNING, BACKOFF)
DELETED = -1  # `services.desired` of a service being deleted


@dataclass
class ServiceRow:
    name: str
    spec: dict[str, Any]
    version: int
    desired: int
    token: str
    grp: str | None
    failed_version: int | None
    reason: str
    ever_ready: bool
    created: float
    updated: float


@dataclass
class InstanceRow:
    id: str
    service: str
    version: int
    port: int
    handle: str
    state: str
    in_gateway: bool
    restarts: int
    started_at: float | None
    ready_at: float | None
    state_since: float
    restart_at: float | None = None


SECRET_FILE_MODE = 0o600  # the store holds every token, env value and git password


class Store:
    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        self.path = path
        if path.exists() and path.stat().st_size == 0:
            # an empty file is what a crash during creation or a truncation leaves: starting empty would
            # forget every service without a word
            raise EasError(f"{path} is empty (0 bytes): restore it from a backup, or remove it to start with "
                           "no services")
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise EasError(f"{path} is not a usable state database ({exc}): restore it from a backup, or move "
                           "it aside to start with no services") from None
        for suffix in ("", "-wal", "-shm"):
            restrict(Path(f"{path}{suffix}"))

    def close(self) -> None:
        with self.lock:
            self._db.close()

    def _migrate(self) -> None:
        """Columns added after the first release (an older state.db gets them with their defaults)."""
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(leases)")}
        for column, decl in LEASE_COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE leases ADD COLUMN {column} {decl}")

    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._db.execute(sql, args).fetchall()

    def _x(self, sql: str, args: tuple = ()) -> int:
        with self.lock:
            return self._db.execute(sql, args).rowcount

    # -- settings --------------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM settings WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def set_setting(self, key: str, value: str) -> None:
        self._x("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value))

    # -- assets (server/assets.py) ---------------------------------------------------------

    def assets(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT * FROM assets ORDER BY name")]

    def asset(self, name: str) -> dict[str, Any]:
        rows = self._q("SELECT * FROM assets WHERE name=?", (name,))
        if not rows:
            raise NotFound(f"asset {name!r} not found (eas asset list)")
        return dict(rows[0])

    def put_asset(self, name: str, type_: str, uri: str, description: str, version: str) -> None:
        now = time.time()
        self._x(
            "INSERT INTO assets(name, type, uri, description, version, created, updated) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET type=excluded.type, uri=excluded.uri, "
            "description=excluded.description, version=excluded.version, updated=excluded.updated",
            (name, type_, uri, description, version, now, now),
        )

    def delete_asset(self, name: str) -> None:
        if not self._x("DELETE FROM assets WHERE name=?", (name,)):
            raise NotFound(f"asset {name!r} not found (eas asset list)")

    # -- services --------------------------------------------------------------------------

    @staticmethod
    def _service(row: sqlite3.Row) -> ServiceRow:
        d = dict(row)
        d["spec"] = json.loads(d["spec"])
        d["ever_ready"] = bool(d["ever_ready"])
        return ServiceRow(**d)

    def services(self) -> list[ServiceRow]:
        return [self._service(r) for r in self._q("SELECT * FROM services ORDER BY name")]

    def service(self, name: str) -> ServiceRow:
        rows = self._q("SELECT * FROM services WHERE name=?", (name,))
        if not rows:
            raise NotFound(f"service {name!r} not found")
        return self._service(rows[0])

    def deleting(self) -> bool:
        """Whether a service is being deleted (without reading every spec)."""
        return bool(self._q("SELECT 1 FROM services WHERE desired=? LIMIT 1", (DELETED,)))

    def has_service(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM services WHERE name=?", (name,)))

    def insert_service(self, name: str, spec: dict, desired: int, token: str, grp: str | None) -> None:
        now = time.time()
        with self.lock:
            if self.has_service(name):
                raise Conflict(f"service {name!r} already exists; use modify to change it")
            if self.has_group(name):
                raise Conflict(f"{name!r} is the name of a service group; choose another service name")
            self._x(
                "INSERT INTO services(name, spec, version, desired, token, grp, created, updated)"
                " VALUES (?, ?, 1, ?, ?, ?, ?, ?)",
                (name, json.dumps(spec), desired, token, grp, now, now),
            )

    def update_service(self, name: str, **fields: Any) -> None:
        if "spec" in fields:
            fields["spec"] = json.dumps(fields["spec"])
        fields["updated"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        self._x(f"UPDATE services SET {cols} WHERE name=?", (*fields.values(), name))

    def delete_service(self, name: str) -> None:
        with self.lock:
            self._x("DELETE FROM services WHERE name=?", (name,))
            self._x("DELETE FROM events WHERE service=?", (name,))
            self._x("DELETE FROM service_uids WHERE service=?", (name,))

    def service_uid(self, service: str, candidates: Iterable[int]) -> int | None:
        """The uid the instances of ``service`` run as (runtimes/users.py): the one recorded, else the first
        candidate no other service holds, recorded now; None when every candidate is held."""
        with self.lock:
            rows = self._q("SELECT uid FROM service_uids WHERE service=?", (service,))
            if rows:
                return rows[0]["uid"]
            held = {r["uid"] for r in self._q("SELECT uid FROM service_uids")}
            uid = next((u for u in candidates if u not in held), None)
            if uid is not None:
                self._x("INSERT INTO service_uids(service, uid) VALUES (?, ?)", (service, uid))
            return uid

    # -- instances -------------------------------------------------------------------------

    @staticmethod
    def _instance(row: sqlite3.Row) -> InstanceRow:
        d = dict(row)
        d["in_gateway"] = bool(d["in_gateway"])
        return InstanceRow(**d)

    def instances(self, service: str | None = None) -> list[InstanceRow]:
        if service is None:
            rows = self._q("SELECT * FROM instances ORDER BY service, started_at, id")
        else:
            rows = self._q("SELECT * FROM instances WHERE service=? ORDER BY started_at, id", (service,))
        return [self._instance(r) for r in rows]

    def insert_instance(self, inst: InstanceRow) -> None:
        self._x(
            "INSERT INTO instances(id, service, version, port, handle, state, in_gateway, restarts,"
            " started_at, ready_at, state_since, restart_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                inst.id, inst.service, inst.version, inst.port, inst.handle, inst.state,
                int(inst.in_gateway), inst.restarts, inst.started_at, inst.ready_at, inst.state_since,
                inst.restart_at,
            ),
        )

    def save_instance(self, inst: InstanceRow) -> None:
        self._x(
            "UPDATE instances SET handle=?, state=?, in_gateway=?, restarts=?, started_at=?, ready_at=?,"
            " state_since=?, restart_at=?, port=? WHERE id=?",
            (
                inst.handle, inst.state, int(inst.in_gateway), inst.restarts, inst.started_at,
                inst.ready_at, inst.state_since, inst.restart_at, inst.port, inst.id,
            ),
        )

    def delete_instance(self, instance_id: str) -> None:
        self._x("DELETE FROM instances WHERE id=?", (instance_id,))

    # -- groups ----------------------------------------------------------------------------

    def has_group(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM groups WHERE name=?", (name,)))

    def groups(self) -> list[tuple[str, str]]:
        return [(r["name"], r["token"]) for r in self._q("SELECT * FROM groups ORDER BY name")]

    def group_token(self, name: str) -> str:
        rows = self._q("SELECT token FROM groups WHERE name=?", (name,))
        if not rows:
            raise NotFound(f"service group {name!r} not found")
        return rows[0]["token"]

    def members(self, grp: str) -> dict[str, int]:
        rows = self._q("SELECT service, weight FROM members WHERE grp=? ORDER BY service", (grp,))
        return {r["service"]: r["weight"] for r in rows}

    def join_group(self, grp: str, service: str, token: str) -> None:
        with self.lock:
            if self.has_service(grp):
                raise Conflict(f"group name {grp!r} is taken by a service; choose another group name")
            self._x("INSERT OR IGNORE INTO groups(name, token) VALUES (?, ?)", (grp, token))
            self._x("INSERT OR IGNORE INTO members(grp, service, weight) VALUES (?, ?, 0)", (grp, service))

    def leave_group(self, grp: str, service: str) -> None:
        with self.lock:
            self._x("DELETE FROM members WHERE grp=? AND service=?", (grp, service))
            if not self._q("SELECT 1 FROM members WHERE grp=?", (grp,)):
                self._x("DELETE FROM groups WHERE name=?", (grp,))
                self._x("DELETE FROM leases WHERE grp=?", (grp,))

    def set_weights(self, grp: str, weights: dict[str, int]) -> None:
        with self.lock:
            current = self.members(grp)
            for service in weights:
                if service not in current:
                    raise NotFound(f"{service!r} is not a member of group {grp!r} (members: {', '.join(current)})")
            for service, weight in weights.items():
                self._x("UPDATE members SET weight=? WHERE grp=? AND service=?", (weight, grp, service))

    # -- events ----------------------------------------------------------------------------

    def add_event(self, service: str, level: str, message: str) -> None:
        self._x(
            "INSERT INTO events(service, time, level, message) VALUES (?, ?, ?, ?)",
            (service, time.time(), level, message),
        )

    def events(self, service: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._q(
            "SELECT time, level, message FROM events WHERE service=? ORDER BY id DESC LIMIT ?", (service, limit)
        )
        return [dict(r) for r in reversed(rows)]

    def recent_events(self, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """The last ``limit`` events of every service, oldest first, in one query."""
        rows = self._q(
            "SELECT service, time, level, message FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY service ORDER BY"
            " id DESC) AS n FROM events) WHERE n <= ? ORDER BY service, id", (limit,)
        )
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r["service"], []).append({"time": r["time"], "level": r["level"], "message": r["message"]})
        return out

    # -- leases ----------------------------------------------------------------------------

    @staticmethod
    def _lease(row: sqlite3.Row) -> Lease:
        guard = GuardSettings.from_dict(json.loads(row["guard"])) if row["guard"] else None
        return Lease(row["grp"], row["holder"], row["expires_at"], row["stable"], guard, row["ttl"],
                     row["state"], row["reason"])

    def lease(self, grp: str) -> Lease | None:
        rows = self._q("SELECT * FROM leases WHERE grp=?", (grp,))
        return self._lease(rows[0]) if rows else None

    def leases(self) -> list[Lease]:
        return [self._lease(r) for r in self._q("SELECT * FROM leases WHERE state=?", (LEASE_HELD,))]

    def acquire_lease(
        self, grp: str, holder: str, ttl: float, *, stable: str | None = None, guard: GuardSettings | None = None
    ) -> Lease:
        now = time.time()
        with self.lock:
            current = self.lease(grp)
            if current and current.holder == holder and current.revoked:
                raise RolloutAborted(current.reason)
            held = current is not None and current.state == LEASE_HELD and current.expires_at > now
            if current and current.holder != holder and held:
                left = int(current.expires_at - now)
                raise Conflict(f"group {grp!r} is leased by {current.holder!r} for {left} s more")
            guard_json = json.dumps(guard.to_dict()) if guard else None
            self._x(
                "INSERT OR REPLACE INTO leases(grp, holder, expires_at, stable, guard, ttl, state, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, '')",
                (grp, holder, now + ttl, stable, guard_json, ttl, LEASE_HELD),
            )
            return self.lease(grp)  # type: ignore[return-value]

    def renew_lease(self, grp: str, holder: str, ttl: float, *, stable: str | None = None) -> Lease:
        """The holder's heartbeat; a lease the platform revoked is never renewed (RolloutAborted)."""
        with self.lock:
            current = self.lease(grp)
            if current is None:  # released meanwhile: take the group again if it is free
                return self.acquire_lease(grp, holder, ttl, stable=stable)
            if current.holder != holder:
                raise Conflict(f"group {grp!r} is leased by {current.holder!r}, not {holder!r}: the lease was lost")
            if current.revoked:
                raise RolloutAborted(current.reason)
            # A lapsed lease (nothing was split) is held again with its stable member and guard.
            self._x(
                "UPDATE leases SET expires_at=?, ttl=?, stable=COALESCE(?, stable), state=?, reason=''"
                " WHERE grp=? AND holder=?",
                (time.time() + ttl, ttl, stable, LEASE_HELD, grp, holder),
            )
            return self.lease(grp)  # type: ignore[return-value]

    def revoke_lease(self, grp: str, holder: str, reason: str) -> None:
        """Mark the lease revoked: the group is free for others, its holder learns why at its next heartbeat."""
        self._x("UPDATE leases SET state=?, reason=? WHERE grp=? AND holder=?", (LEASE_REVOKED, reason, grp, holder))

    def lapse_lease(self, grp: str, holder: str, reason: str) -> None:
        """No heartbeat, nothing split: the group is free for others; its holder may still renew it."""
        self._x("UPDATE leases SET state=?, reason=? WHERE grp=? AND holder=?", (LEASE_LAPSED, reason, grp, holder))

    def lease_holder(self, grp: str) -> tuple[str, float] | None:
        """``(holder, expires_at)`` of the group's lease while it holds (not lapsed, not revoked)."""
        rows = self._q("SELECT holder, expires_at FROM leases WHERE grp=? AND expires_at > ? AND state=?",
                       (grp, time.time(), LEASE_HELD))
        return (rows[0]["holder"], rows[0]["expires_at"]) if rows else None

    def release_lease(self, grp: str, holder: str) -> None:
        self._x("DELETE FROM leases WHERE grp=? AND holder=?", (grp, holder))


def restrict(path: Path) -> None:
    """Owner-only access to a file holding secrets (when it exists)."""
    try:
        path.chmod(SECRET_FILE_MODE)
    except FileNotFoundError:
        pass
