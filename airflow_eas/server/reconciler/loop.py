"""The control loop: makes what runs match what the store says should run.

Each tick walks every service: it advances each instance one step (``lifecycle``), then
starts or retires instances the way a rolling update does (new ones ready before old ones
leave, within ``max_surge`` / ``max_unavailable``), and finally hands the gateway worker
its desired state (``projection``). API calls only write the store and wake the loop, so
one thread owns every instance's state; nothing in a tick waits on a process, a probe,
the engine or HAProxy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_eas.server import assets
from airflow_eas.server.gateway import Gateway, GatewayState
from airflow_eas.server.metrics import MetricsCollector
from airflow_eas.server.reconciler.background import Background
from airflow_eas.server.reconciler.gateway_sync import GatewaySync
from airflow_eas.server.reconciler.image_gc import ImageGC
from airflow_eas.server.reconciler.launcher import Launcher
from airflow_eas.server.reconciler.lifecycle import GONE, Lifecycle
from airflow_eas.server.reconciler.projection import gateway_state
from airflow_eas.server.reconciler.throttle import ErrorThrottle
from airflow_eas.server.reconciler.timings import Timings
from airflow_eas.server.runtimes.base import Runtime
from airflow_eas.server.store import ACTIVE_STATES, BACKOFF, DELETED, DRAINING, RUNNING, STARTING, STOPPING
from airflow_eas.spec import ServiceSpec

if TYPE_CHECKING:
    from airflow_eas.server.store import InstanceRow, ServiceRow, Store

log = logging.getLogger("airflow_eas.server")


class Reconciler:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        gateway: Gateway,
        metrics: MetricsCollector,
        data_dir: Path,
        timings: Timings | None = None,
    ) -> None:
        self.store, self.runtime, self.gateway, self.metrics = store, runtime, gateway, metrics
        self.data_dir = data_dir
        self.t = timings or Timings()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._errors = ErrorThrottle(log, self.t.error_log_period)
        self._gateway_errors = ErrorThrottle(log, self.t.error_log_period)
        self.launcher = Launcher(
            runtime, data_dir, record_delay=self.t.launch_record_delay, resolve=partial(assets.resolve, store)
        )
        self._background = Background(8, "eas-observe")
        self.sync = GatewaySync(
            gateway, sampler=self._adjust_sampling, sampling_period=self.t.sampling_period,
            throttle=self._gateway_errors,
        )
        self.image_gc = ImageGC(store, runtime, self._background, self.t.image_gc_period)
        self.lifecycle = Lifecycle(store, runtime, self.launcher, self._background, self.t, lambda: self.sync.sessions,
                                   on_released=self._released)
        self._handover_lock = threading.Lock()  # a state is projected and handed over as one step
        self._draining = False
        self._exit_events = False  # the runtime wakes the loop when an instance ends
        self._thread = threading.Thread(target=self._loop, name="eas-reconciler", daemon=True)

    @property
    def last_error(self) -> str | None:
        return self._errors.last_error or self._gateway_errors.last_error

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._exit_events = self.runtime.on_exit(self.wake)
        self._adopt()
        self.gateway.ensure_running(self.gateway_state())
        self.sync.start()
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, stop_instances: bool) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.t.join_timeout)
        self.sync.stop(self.t.join_timeout)
        self.launcher.shutdown()
        for inst in self.store.instances():  # keep what the last launches started, to adopt or stop it
            svc = self.store.service(inst.service) if self.store.has_service(inst.service) else None
            self.lifecycle.collect_launch(svc, inst)
        self._background.shutdown()  # after the collection: it may still fire a terminate
        if stop_instances:
            self._stop_instances()
            self.gateway.stop()

    def _stop_instances(self) -> None:
        handles = [i.handle for i in self.store.instances() if i.handle]
        for handle in handles:
            self.runtime.terminate(handle)
        deadline = time.monotonic() + self.t.grace
        for handle in handles:
            while self.runtime.poll(handle) is None and time.monotonic() < deadline:
                time.sleep(self.t.stop_poll)
            if self.runtime.poll(handle) is None:
                self.runtime.kill(handle)
        self.runtime.end_unknown(set())  # anything else it started (a launch whose handle was never saved)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                self.tick()
                self._errors.clear()
                wait = self._next_wait()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one bad tick
                self._errors.report("reconcile failed", exc)
                wait = self.t.tick
            self._wake.wait(wait)

    def _next_wait(self) -> float:
        """Until the next pass is due: soon while anything is in motion, else when the earliest timer
        (a backoff) is due; at rest, exits and API calls wake the loop and the idle pass is a safety net."""
        if self.lifecycle.promotions.ids():
            return self.t.tick
        rest = self.t.idle_tick if self._exit_events else self.t.poll_tick
        due = time.time() + rest
        for inst in self.store.instances():
            if inst.state == BACKOFF:
                due = min(due, inst.restart_at or 0)
            elif inst.state != RUNNING:
                return self.t.tick
        if self.store.deleting():
            return self.t.tick
        return max(0.0, min(rest, due - time.time()))

    def _adopt(self) -> None:
        """After a restart: end what was started but never recorded, keep instances that still run, relaunch
        the ones that died."""
        swept = self.runtime.end_unknown({i.handle for i in self.store.instances() if i.handle})
        if swept:
            log.warning("ended %d instance process(es) started before a crash whose handle was never saved: %s",
                        len(swept), ", ".join(map(str, swept)))
        now = time.time()
        for inst in self.store.instances():
            if inst.handle and self.runtime.adopt(inst.handle):
                continue
            if inst.state in (DRAINING, STOPPING):
                self.store.delete_instance(inst.id)
            elif inst.state in (STARTING, RUNNING):
                inst.state, inst.handle, inst.restart_at, inst.state_since = BACKOFF, "", now, now
                self.store.save_instance(inst)

    # -- the gateway -------------------------------------------------------------------------

    def gateway_state(self) -> GatewayState:
        return gateway_state(self.store, self.lifecycle.promotions.ids())

    def apply_gateway(self) -> None:
        """Hand the store's gateway state over and wait until it serves (an API call's weights take
        effect before it returns); the loop's own work goes on meanwhile."""
        version = self._hand_over()
        self.sync.wait_applied(version, self.t.gateway_apply_timeout)

    def _hand_over(self) -> int:
        with self._handover_lock:
            version = self.sync.hand_over(self.gateway_state(), count_sessions=self._draining)
            self.lifecycle.promotions.handed_over(version)
            return version

    def _adjust_sampling(self, state: GatewayState) -> None:
        """Busy routes log a sample of their requests (see metrics.py); runs on the gateway worker."""
        keys = {
            route: route if backend.startswith("s_") else f"group:{route}"
            for route, (backend, _) in state.routes.items()
        }
        current = {keys[r]: n for r, n in self.gateway.sampling.items() if r in keys}
        plan = self.metrics.sampling_plan(list(keys.values()), current)
        if plan:
            route_of = {key: route for route, key in keys.items()}
            self.gateway.set_sampling({route_of[key]: n for key, n in plan.items()})

    # -- one pass ----------------------------------------------------------------------------

    def tick(self) -> None:
        self._promote_routed()
        with self.store.lock:
            services = {s.name: s for s in self.store.services()}
            by_service: dict[str, list[InstanceRow]] = defaultdict(list)
            for inst in self.store.instances():
                by_service[inst.service].append(inst)
        for name, insts in by_service.items():
            if name not in services:  # orphans of a deleted service
                for inst in insts:
                    try:
                        self.lifecycle.advance(None, None, inst)
                        if inst.state in ACTIVE_STATES:
                            self.lifecycle.retire(inst)
                    except Exception as exc:  # noqa: BLE001 - one instance must not stop the pass
                        self._errors.report(f"instance {inst.id} of deleted service {name}", exc)
        for svc in services.values():
            try:
                self._reconcile(svc, by_service.get(svc.name, []))
            except Exception as exc:  # noqa: BLE001 - one service must not stop the pass for the others
                self._fail_service(svc, exc)
        self._draining = any(i.state == DRAINING for i in self.store.instances())
        self._hand_over()
        self.image_gc.tick()

    def _released(self) -> None:
        self.image_gc.soon()
        self.wake()

    def _fail_service(self, svc: ServiceRow, exc: Exception) -> None:
        """Record on the service what went wrong with it; the pass goes on with the others."""
        self._errors.report(f"service {svc.name}", exc)
        reason = f"the control plane could not reconcile version {svc.version}: {type(exc).__name__}: {exc}"
        if svc.failed_version != svc.version and self.store.has_service(svc.name):
            self.store.update_service(svc.name, failed_version=svc.version, reason=reason)
            self.store.add_event(svc.name, "error", reason)

    def _promote_routed(self) -> None:
        """Ready instances the gateway now routes to are RUNNING."""
        routed = set(self.lifecycle.promotions.take_applied(self.sync.applied_version))
        if not routed:
            return
        now = time.time()
        for inst in self.store.instances():
            if inst.id in routed and inst.state == STARTING:
                self.lifecycle.set(inst, RUNNING, ready_at=now)
                self.store.update_service(inst.service, ever_ready=1)

    def _reconcile(self, svc: ServiceRow, insts: list[InstanceRow]) -> None:
        spec = ServiceSpec.model_validate(svc.spec)
        for inst in insts:
            self.lifecycle.advance(svc, spec, inst)
        fresh = self.store.service(svc.name)  # an instance may have marked it Failed
        if fresh.version != svc.version:  # modified meanwhile: launch what the new version says
            spec = ServiceSpec.model_validate(fresh.spec)
        svc = fresh
        insts = [i for i in insts if i.state != GONE]
        if svc.desired == DELETED and not insts:
            self._finish_delete(svc)
            return
        active = [i for i in insts if i.state in ACTIVE_STATES]
        current = [i for i in active if i.version == svc.version]
        old = [i for i in active if i.version != svc.version]
        strategy = spec.metadata.rolling_strategy
        surge, unavailable = strategy.max_surge, strategy.max_unavailable
        if surge == 0 and unavailable == 0:
            surge = 1
        want = max(svc.desired, 0)
        current = self._scale_current(svc, spec, current, len(old), want, surge)
        self._retire_old(old, current, want, unavailable)

    def _scale_current(
        self, svc: ServiceRow, spec: ServiceSpec, current: list[InstanceRow], n_old: int, want: int, surge: int,
    ) -> list[InstanceRow]:
        """Instances of the current version, retired or launched towards ``want`` (no new launches for a
        version marked Failed)."""
        if svc.failed_version == svc.version:
            for inst in [i for i in current if i.state != RUNNING]:
                self.lifecycle.retire(inst)
            return [i for i in current if i.state == RUNNING]
        extra = len(current) - want
        if extra > 0:
            # retire the least useful first: not serving, then the newest
            ranked = sorted(current, key=lambda i: (i.state == RUNNING, i.started_at or 0))
            for inst in ranked[:extra]:
                self.lifecycle.retire(inst)
            current = ranked[extra:]
        room = want + surge - len(current) - n_old
        for _ in range(max(0, min(want - len(current), room))):
            current.append(self.lifecycle.launch(svc, spec))
        return current

    def _retire_old(self, old: list[InstanceRow], current: list[InstanceRow], want: int, unavailable: int) -> None:
        """Old versions leave as the current one serves, keeping ``want - max_unavailable`` serving."""
        for inst in [i for i in old if i.state != RUNNING]:
            self.lifecycle.retire(inst)
        ready_old = sorted((i for i in old if i.state == RUNNING), key=lambda i: i.started_at or 0)
        ready_current = sum(1 for i in current if i.state == RUNNING)
        removable = ready_current + len(ready_old) - (want - unavailable)
        for inst in ready_old[: max(0, removable)]:
            self.lifecycle.retire(inst)

    def _finish_delete(self, svc: ServiceRow) -> None:
        with self.store.lock:
            if svc.grp:
                self.store.leave_group(svc.grp, svc.name)
            self.store.delete_service(svc.name)
        self.metrics.forget(svc.name)
        self.launcher.remove_files(svc.name)
