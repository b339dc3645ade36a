"""One instance's lifecycle: a handler per state, each taking one step and never blocking.

STARTING -> RUNNING once ready and routed to; RUNNING -> BACKOFF when it dies;
BACKOFF -> STARTING when its delay is over; DRAINING -> STOPPING once no request is in
flight (or after ``drain_timeout``); STOPPING -> gone once it exited (SIGKILL after
``grace``). What may block (engine calls, probes) runs in the background and is taken in
on a later tick.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from airflow_eas.errors import DeployFailed
from airflow_eas.server.reconciler.background import PENDING, Background
from airflow_eas.server.reconciler.gateway_sync import Sessions
from airflow_eas.server.reconciler.launcher import Launcher, free_port, port_free
from airflow_eas.server.reconciler.probes import is_ready
from airflow_eas.server.reconciler.projection import group_server_name
from airflow_eas.server.reconciler.timings import Timings
from airflow_eas.server.runtimes.base import ExitStatus, Runtime
from airflow_eas.server.store import BACKOFF, DELETED, DRAINING, RUNNING, STARTING, STOPPING, InstanceRow
from airflow_eas.spec import ServiceSpec

if TYPE_CHECKING:
    from airflow_eas.server.store import ServiceRow, Store

    Handler = Callable[[ServiceRow | None, ServiceSpec | None, InstanceRow, float], None]

GONE = "gone"  # deleted from the store during this tick


class Promotions:
    """Ready instances the gateway must route to before the store calls them RUNNING (so nobody sees
    "Running" too early): each waits for the first gateway state handed over with it to be applied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int | None] = {}  # instance id -> version of the state that has it

    def add(self, instance_id: str) -> None:
        with self._lock:
            self._pending.setdefault(instance_id, None)

    def __contains__(self, instance_id: object) -> bool:
        with self._lock:
            return instance_id in self._pending

    def ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._pending)

    def handed_over(self, version: int) -> None:
        with self._lock:
            for key, seen in self._pending.items():
                if seen is None:
                    self._pending[key] = version

    def take_applied(self, applied_version: int) -> list[str]:
        with self._lock:
            done = [k for k, v in self._pending.items() if v is not None and v <= applied_version]
            for key in done:
                del self._pending[key]
            return done


class Lifecycle:
    def __init__(
        self, store: Store, runtime: Runtime, launcher: Launcher, background: Background, timings: Timings,
        sessions: Callable[[], Sessions], on_released: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.runtime, self.launcher, self.bg, self.t = store, runtime, launcher, background, timings
        self.sessions = sessions
        self.on_released = on_released  # an ended instance's resources are gone (its image may be unused now)
        self.promotions = Promotions()
        self._fails: dict[tuple[str, int], int] = defaultdict(int)
        self.handlers: dict[str, Handler] = {
            STARTING: self._starting,
            RUNNING: self._running,
            BACKOFF: self._backoff,
            DRAINING: self._draining,
            STOPPING: self._stopping,
        }

    def advance(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow) -> None:
        if not self.collect_launch(svc, inst):
            return  # still launching: leave it alone
        handler = self.handlers.get(inst.state)
        if handler is not None:
            handler(svc, spec, inst, time.time())

    # -- the states ----------------------------------------------------------------------------

    def _starting(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow, now: float) -> None:
        if inst.id in self.promotions:
            return  # ready; waiting for the gateway to take it
        kind = spec.kind if spec is not None else None
        seen = self.bg.observe(inst.id, STARTING, partial(self._observe_start, inst.handle, kind, inst.port))
        if seen is PENDING:
            return
        status, ready = seen
        if status is not None:
            self.died_before_ready(svc, inst, status.describe())
        elif ready:
            # RUNNING only once the gateway routes to it (see Reconciler.tick)
            inst.in_gateway = True
            self.store.save_instance(inst)
            self.promotions.add(inst.id)
            if svc is not None:
                self._fails.pop((svc.name, inst.version), None)
                took = now - (inst.started_at or now)
                self.store.add_event(svc.name, "info", f"instance {inst.id} is ready ({took:.1f} s after start)")
        elif now - inst.state_since > self.t.startup_timeout:
            if inst.handle:
                self.bg.fire("kill", self.runtime.kill, inst.handle)
            hint = self.runtime.not_listening(spec, inst.port) if spec is not None else ""
            self.died_before_ready(svc, inst, f"not ready after {self.t.startup_timeout:.0f} s ({hint})")

    def _running(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow, now: float) -> None:
        if self.runtime.instant_poll:  # read at once: the pass an exit wakes sees it (no later pass is due)
            status = self.runtime.poll(inst.handle)
        else:
            status = self.bg.observe(inst.id, RUNNING, partial(self.runtime.poll, inst.handle))
        if status is PENDING or status is None:
            return
        delay = self.backoff_delay(inst.restarts)
        if svc is not None:
            self.store.add_event(
                svc.name, "warning",
                f"instance {inst.id} {status.describe()}; restarting in {delay:.1f} s: {self.launcher.log_tail(inst)}",
            )
        self.set(inst, BACKOFF, restart_at=now + delay, restarts=inst.restarts + 1)

    def _backoff(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow, now: float) -> None:
        if svc is None or svc.desired == DELETED:
            self.retire(inst)
        elif now >= (inst.restart_at or 0):
            self._relaunch(svc, spec, inst)

    def _draining(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow, now: float) -> None:
        age = now - inst.state_since
        if age <= self.t.drain_settle:
            return  # the gateway is still being told to stop sending to it
        sessions = self.sessions()
        names = (inst.id, group_server_name(inst))
        # counted only once the gateway state that drains it was applied
        drained = sessions.after > inst.state_since and not any(
            n for (_, server), n in sessions.counts.items() if server in names
        )
        if drained or age > self.t.drain_timeout:
            self.set(inst, STOPPING)
            self.bg.fire("terminate", self.runtime.terminate, inst.handle)

    def _stopping(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow, now: float) -> None:
        if inst.handle:
            status = self.bg.observe(inst.id, STOPPING, partial(self.runtime.poll, inst.handle))
            if status is PENDING:
                return
            if status is None:
                if now - inst.state_since > self.t.grace:
                    self.bg.fire("kill", self.runtime.kill, inst.handle)
                return
            self.bg.fire("release", self._release, inst.handle)
        self.store.delete_instance(inst.id)
        self.bg.forget(inst.id)
        inst.state = GONE

    def _release(self, handle: str) -> None:
        self.runtime.release(handle)
        self.on_released()

    def _observe_start(self, handle: str, kind: str | None, port: int) -> tuple[ExitStatus | None, bool]:
        status = self.runtime.poll(handle) if handle else None
        host, inner = self.runtime.probe_address(handle, port)  # the instance's own listener, not a proxy
        ready = status is None and kind is not None and is_ready(
            kind, host, inner, probe_timeout=self.t.probe_timeout, connect_timeout=self.t.connect_timeout
        )
        # a port picked free can be taken by another program before the instance binds it: then the probe
        # answers for that program (an old version, someone else's service), never for this instance
        return status, ready and self.runtime.listens(handle, port) is not False

    # -- transitions ---------------------------------------------------------------------------

    def died_before_ready(self, svc: ServiceRow | None, inst: InstanceRow, what: str) -> None:
        if svc is None:
            self.set(inst, STOPPING)
            return
        key = (svc.name, inst.version)
        self._fails[key] += 1
        reason = f"instance {inst.id} {what} before it became ready; last log lines: {self.launcher.log_tail(inst)}"
        self.store.add_event(svc.name, "error", reason)
        if self._fails[key] >= self.t.failures_to_fail and svc.failed_version != inst.version:
            message = f"{self._fails[key]} instances failed to start: {reason}"
            self.store.update_service(svc.name, failed_version=inst.version, reason=message)
            self.store.add_event(svc.name, "error", f"service version {inst.version} marked Failed")
            self.set(inst, STOPPING)
            return
        delay = self.backoff_delay(self._fails[key] - 1)
        self.set(inst, BACKOFF, restart_at=time.time() + delay, restarts=inst.restarts + 1)

    def retire(self, inst: InstanceRow) -> None:
        if inst.state == RUNNING and inst.in_gateway:
            self.set(inst, DRAINING)
        elif inst.state in (STARTING, BACKOFF):
            self.set(inst, STOPPING)
            if inst.handle:
                self.bg.fire("terminate", self.runtime.terminate, inst.handle)

    def set(self, inst: InstanceRow, state: str, **fields: object) -> None:
        inst.state = state
        inst.state_since = time.time()
        for key, value in fields.items():
            setattr(inst, key, value)
        self.store.save_instance(inst)

    def backoff_delay(self, attempt: int) -> float:
        return min(self.t.backoff_base * (2 ** max(attempt, 0)), self.t.backoff_max)

    # -- launching -----------------------------------------------------------------------------

    def launch(self, svc: ServiceRow, spec: ServiceSpec) -> InstanceRow:
        now = time.time()
        inst = InstanceRow(
            id=f"{svc.name}-{secrets.token_hex(3)}", service=svc.name, version=svc.version,
            port=free_port(), handle="", state=STARTING, in_gateway=False, restarts=0,
            started_at=now, ready_at=None, state_since=now,
        )
        self.store.insert_instance(inst)
        self.launcher.start(svc.name, svc.version, svc.spec, spec, inst)
        return inst

    def _relaunch(self, svc: ServiceRow, spec: ServiceSpec | None, inst: InstanceRow) -> None:
        if spec is None:
            return
        if inst.version != svc.version:
            self.set(inst, STOPPING)
            return
        if not port_free(inst.port):
            inst.port = free_port()
            inst.in_gateway = False  # a new address is a new gateway server, added once ready
        self.set(inst, STARTING, started_at=time.time())
        self.launcher.start(svc.name, svc.version, svc.spec, spec, inst)

    def collect_launch(self, svc: ServiceRow | None, inst: InstanceRow) -> bool:
        """Take in a finished background launch; False while it still runs."""
        if self.launcher.busy(inst.id):
            return False
        future = self.launcher.outcome(inst.id)
        if future is None:
            return True
        try:
            inst.handle = future.result()
        except Exception as exc:  # noqa: BLE001 - any launch failure is this instance's, never the loop's
            inst.handle = ""
            what = exc.message if isinstance(exc, DeployFailed) else f"{type(exc).__name__}: {exc}"
            if inst.state == STARTING:
                self.died_before_ready(svc, inst, f"could not start ({what})")
            elif inst.state == STOPPING:
                self.store.save_instance(inst)
            return inst.state != BACKOFF
        self.store.save_instance(inst)
        if inst.state == STOPPING:  # retired while it was being launched
            self.bg.fire("terminate", self.runtime.terminate, inst.handle)
        return True
