"""The control loop: makes what runs match what the store says should run.

Each tick walks every service: it advances each instance's lifecycle (starting ->
running, died -> backoff -> starting, draining -> stopping -> gone), then starts or
retires instances the way a rolling update does (new ones ready before old ones
leave, within ``max_surge`` / ``max_unavailable``), and finally hands the gateway
its desired state. API calls only write the store and wake the loop, so one thread
owns every process and every gateway change.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import shutil
import socket
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from airflow_eas.errors import DeployFailed
from airflow_eas.platform import base as api
from airflow_eas.server import assets
from airflow_eas.server.gateway import DRAIN, MAINT, READY, Backend, Gateway, GatewayState, Server
from airflow_eas.server.metrics import MetricsCollector
from airflow_eas.server.runtimes.base import LaunchRequest, Runtime
from airflow_eas.server.storage import storage_for
from airflow_eas.server.store import (
    ACTIVE_STATES,
    BACKOFF,
    DRAINING,
    RUNNING,
    STARTING,
    STOPPING,
    InstanceRow,
    ServiceRow,
    Store,
)
from airflow_eas.spec import ServiceSpec, redact_secrets

log = logging.getLogger("airflow_eas.server")

DELETED = -1  # `services.desired` of a service being deleted


@dataclass
class Timings:
    tick: float = 0.1
    failures_to_fail: int = 3  # consecutive deaths before ready that mark a service Failed
    startup_timeout: float = 300.0
    drain_timeout: float = 30.0
    grace: float = 10.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0


INSTANCE_STATUS = {
    STARTING: "Pending",
    RUNNING: api.RUNNING,
    BACKOFF: "Restarting",
    DRAINING: "Draining",
    STOPPING: "Terminating",
}


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
        self._fails: dict[tuple[str, int], int] = defaultdict(int)
        self._tick_lock = threading.Lock()
        self._promote: set[str] = set()  # ready instances waiting for the gateway to take them
        self._launcher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eas-launch")
        self._launching: dict[str, Future[str]] = {}
        self._next_sampling = 0.0
        self._thread = threading.Thread(target=self._loop, name="eas-reconciler", daemon=True)
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._adopt()
        self.gateway.ensure_running(self.gateway_state())
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, stop_instances: bool) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._launcher.shutdown(wait=True)
        for inst in self.store.instances():  # keep what the last launches started, to adopt or stop it
            self._collect_launch(self.store.service(inst.service) if self.store.has_service(inst.service) else None,
                                 inst)
        if stop_instances:
            handles = [i.handle for i in self.store.instances() if i.handle]
            for handle in handles:
                self.runtime.terminate(handle)
            deadline = time.monotonic() + self.t.grace
            for handle in handles:
                while self.runtime.poll(handle) is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.runtime.poll(handle) is None:
                    self.runtime.kill(handle)
            self.gateway.stop()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # the loop must outlive any one bad tick
                if str(exc) != self.last_error:
                    log.exception("reconcile failed")
                self.last_error = str(exc)
            self._wake.wait(self.t.tick)
            self._wake.clear()

    def _adopt(self) -> None:
        """After a restart: keep instances that still run, relaunch the ones that died."""
        now = time.time()
        for inst in self.store.instances():
            if inst.handle and self.runtime.adopt(inst.handle):
                continue
            if inst.state in (DRAINING, STOPPING):
                self.store.delete_instance(inst.id)
            elif inst.state in (STARTING, RUNNING):
                inst.state, inst.handle, inst.restart_at, inst.state_since = BACKOFF, "", now, now
                self.store.save_instance(inst)

    # -- one pass ----------------------------------------------------------------------------

    def tick_now(self) -> None:
        """Push the store's gateway state now (weights take effect before the API call returns)."""
        with self._tick_lock:
            self.gateway.apply(self.gateway_state())

    def tick(self) -> None:
        with self._tick_lock:
            self._tick()

    def _tick(self) -> None:
        with self.store.lock:
            services = {s.name: s for s in self.store.services()}
            by_service: dict[str, list[InstanceRow]] = defaultdict(list)
            for inst in self.store.instances():
                by_service[inst.service].append(inst)
        sessions = self.gateway.sessions() if any(
            i.state == DRAINING for insts in by_service.values() for i in insts
        ) else {}
        for name, insts in by_service.items():
            if name not in services:  # orphans of a deleted service
                for inst in insts:
                    self._advance(None, None, inst, sessions)
                    if inst.state in ACTIVE_STATES:
                        self._retire(inst)
        for svc in services.values():
            self._reconcile(svc, by_service.get(svc.name, []), sessions)
        state = self.gateway_state()
        if self.gateway.alive():
            self.gateway.apply(state)
        else:
            self.gateway.ensure_running(state)
            self.gateway.restarts += 1
            log.warning("gateway was down; started it again from the store")
        self._adjust_sampling(state)
        if self._promote:
            now = time.time()
            for inst in self.store.instances():
                if inst.id in self._promote and inst.state == STARTING:
                    self._set(inst, RUNNING, ready_at=now)
                    self.store.update_service(inst.service, ever_ready=1)
            self._promote.clear()

    def _reconcile(self, svc: ServiceRow, insts: list[InstanceRow], sessions: dict) -> None:
        spec = ServiceSpec.model_validate(svc.spec)
        for inst in insts:
            self._advance(svc, spec, inst, sessions)
        svc = self.store.service(svc.name)  # _advance may have marked it Failed
        insts = [i for i in insts if i.state != "gone"]
        if svc.desired == DELETED and not insts:
            self._finish_delete(svc)
            return
        want = max(svc.desired, 0)
        strategy = spec.metadata.rolling_strategy
        surge, unavailable = strategy.max_surge, strategy.max_unavailable
        if surge == 0 and unavailable == 0:
            surge = 1
        active = [i for i in insts if i.state in ACTIVE_STATES]
        current = [i for i in active if i.version == svc.version]
        old = [i for i in active if i.version != svc.version]

        if svc.failed_version == svc.version:
            for inst in [i for i in current if i.state != RUNNING]:
                self._retire(inst)
            current = [i for i in current if i.state == RUNNING]
        else:
            extra = len(current) - want
            if extra > 0:
                # retire the least useful first: not serving, then the newest
                ranked = sorted(current, key=lambda i: (i.state == RUNNING, i.started_at or 0))
                for inst in ranked[:extra]:
                    self._retire(inst)
                current = ranked[extra:]
            room = want + surge - len(current) - len(old)
            for _ in range(max(0, min(want - len(current), room))):
                current.append(self._launch(svc, spec))

        for inst in [i for i in old if i.state != RUNNING]:
            self._retire(inst)
        ready_old = sorted((i for i in old if i.state == RUNNING), key=lambda i: i.started_at or 0)
        ready_current = sum(1 for i in current if i.state == RUNNING)
        removable = ready_current + len(ready_old) - (want - unavailable)
        for inst in ready_old[: max(0, removable)]:
            self._retire(inst)

    def _adjust_sampling(self, state: GatewayState) -> None:
        """Once a second: busy routes log a sample of their requests (see metrics.py)."""
        if time.monotonic() < self._next_sampling:
            return
        self._next_sampling = time.monotonic() + 1.0
        keys = {
            route: route if backend.startswith("s_") else f"group:{route}"
            for route, (backend, _) in state.routes.items()
        }
        current = {keys[r]: n for r, n in self.gateway.sampling.items() if r in keys}
        plan = self.metrics.sampling_plan(list(keys.values()), current)
        if plan:
            route_of = {key: route for route, key in keys.items()}
            self.gateway.set_sampling({route_of[key]: n for key, n in plan.items()})

    # -- one instance ------------------------------------------------------------------------

    def _advance(self, svc: ServiceRow | None, spec: ServiceSpec | None, inst: InstanceRow, sessions: dict) -> None:
        if not self._collect_launch(svc, inst):
            return
        now = time.time()
        if inst.state == STARTING:
            status = self.runtime.poll(inst.handle) if inst.handle else None
            if status is not None:
                self._died_before_ready(svc, inst, status.describe())
            elif spec is not None and self._probe(spec, *self.runtime.probe_address(inst.handle, inst.port)):
                # RUNNING only once the gateway routes to it (see _tick): nobody sees "Running" too early
                inst.in_gateway = True
                self.store.save_instance(inst)
                self._promote.add(inst.id)
                if svc is not None:
                    self._fails.pop((svc.name, inst.version), None)
                    took = now - (inst.started_at or now)
                    self.store.add_event(svc.name, "info", f"instance {inst.id} is ready ({took:.1f} s after start)")
            elif now - inst.state_since > self.t.startup_timeout:
                self.runtime.kill(inst.handle)
                hint = self.runtime.not_listening(spec, inst.port) if spec is not None else ""
                self._died_before_ready(svc, inst, f"not ready after {self.t.startup_timeout:.0f} s ({hint})")
        elif inst.state == RUNNING:
            status = self.runtime.poll(inst.handle)
            if status is not None:
                delay = self._backoff(inst.restarts)
                if svc is not None:
                    self.store.add_event(
                        svc.name, "warning",
                        f"instance {inst.id} {status.describe()}; restarting in {delay:.1f} s: {self._log_tail(inst)}",
                    )
                self._set(inst, BACKOFF, restart_at=now + delay, restarts=inst.restarts + 1)
        elif inst.state == BACKOFF:
            if svc is None or svc.desired == DELETED:
                self._retire(inst)
            elif now >= (inst.restart_at or 0):
                self._relaunch(svc, spec, inst)
        elif inst.state == DRAINING:
            names = (inst.id, group_server_name(inst))
            in_flight = sum(n for (_, server), n in sessions.items() if server in names)
            settled = now - inst.state_since > 0.3
            if settled and (in_flight == 0 or now - inst.state_since > self.t.drain_timeout):
                self._set(inst, STOPPING)
                self.runtime.terminate(inst.handle)
        elif inst.state == STOPPING:
            status = self.runtime.poll(inst.handle) if inst.handle else True
            if status is not None:
                if inst.handle:
                    self.runtime.release(inst.handle)
                self.store.delete_instance(inst.id)
                inst.state = "gone"
            elif now - inst.state_since > self.t.grace:
                self.runtime.kill(inst.handle)

    def _died_before_ready(self, svc: ServiceRow | None, inst: InstanceRow, what: str) -> None:
        if svc is None:
            self._set(inst, STOPPING)
            return
        key = (svc.name, inst.version)
        self._fails[key] += 1
        reason = f"instance {inst.id} {what} before it became ready; last log lines: {self._log_tail(inst)}"
        self.store.add_event(svc.name, "error", reason)
        if self._fails[key] >= self.t.failures_to_fail and svc.failed_version != inst.version:
            message = f"{self._fails[key]} instances failed to start: {reason}"
            self.store.update_service(svc.name, failed_version=inst.version, reason=message)
            self.store.add_event(svc.name, "error", f"service version {inst.version} marked Failed")
            self._set(inst, STOPPING)
            return
        delay = self._backoff(self._fails[key] - 1)
        self._set(inst, BACKOFF, restart_at=time.time() + delay, restarts=inst.restarts + 1)

    def _retire(self, inst: InstanceRow) -> None:
        if inst.state == RUNNING and inst.in_gateway:
            self._set(inst, DRAINING)
        elif inst.state in (STARTING, BACKOFF):
            self._set(inst, STOPPING)
            if inst.handle:
                self.runtime.terminate(inst.handle)

    def _set(self, inst: InstanceRow, state: str, **fields: object) -> None:
        inst.state = state
        inst.state_since = time.time()
        for key, value in fields.items():
            setattr(inst, key, value)
        self.store.save_instance(inst)

    def _backoff(self, attempt: int) -> float:
        return min(self.t.backoff_base * (2 ** max(attempt, 0)), self.t.backoff_max)

    # -- launching ---------------------------------------------------------------------------

    def _launch(self, svc: ServiceRow, spec: ServiceSpec) -> InstanceRow:
        now = time.time()
        inst = InstanceRow(
            id=f"{svc.name}-{secrets.token_hex(3)}", service=svc.name, version=svc.version,
            port=_free_port(), handle="", state=STARTING, in_gateway=False, restarts=0,
            started_at=now, ready_at=None, state_since=now,
        )
        self.store.insert_instance(inst)
        self._start_process(svc, spec, inst)
        return inst

    def _relaunch(self, svc: ServiceRow, spec: ServiceSpec | None, inst: InstanceRow) -> None:
        if spec is None:
            return
        if inst.version != svc.version:
            self._set(inst, STOPPING)
            return
        if not _port_free(inst.port):
            inst.port = _free_port()
            inst.in_gateway = False  # a new address is a new gateway server, added once ready
        self._set(inst, STARTING, started_at=time.time())
        self._start_process(svc, spec, inst)

    def _start_process(self, svc: ServiceRow, spec: ServiceSpec, inst: InstanceRow) -> None:
        """Launch in the background: a git clone, an OSS download or an engine call must not stall the
        loop (and with it every other service). ``_advance`` collects the outcome."""
        self._launching[inst.id] = self._launcher.submit(
            self._prepare_and_launch, svc.name, svc.version, svc.spec, spec, inst.id, inst.port, self.log_path(inst)
        )

    def _prepare_and_launch(
        self, name: str, version: int, raw_spec: dict, spec: ServiceSpec, instance_id: str, port: int, log_path: Path
    ) -> str:
        workdir = self.data_dir / "services" / name / f"v{version}"
        workdir.mkdir(parents=True, exist_ok=True)
        spec = assets.resolve(self.store, spec)  # asset:NAME as the asset points now
        # local, nfs, git and oss mounts (and oss:// locations) as host folders
        prepared = storage_for(self.data_dir).prepare(name, version, spec, self.runtime.name)
        (workdir / "spec.json").write_text(json.dumps(prepared.spec))
        env = {
            "PORT": str(port),
            "EAS_SERVICE_NAME": name,
            "EAS_INSTANCE_ID": instance_id,
            "EAS_CACHE_DIR": str(self.data_dir / "cache" / name),
            "EAS_MOUNTS": json.dumps(prepared.eas_mounts),
        }
        if spec.containers:
            # web apps (Gradio, FastAPI, Flask) are served below /api/predict/<name>, which the gateway strips:
            # they need their public prefix only to write links
            env["EAS_ROOT_PATH"] = f"/api/predict/{name}"
            env.update({e.name: e.value for e in spec.containers[0].env})
        return self.runtime.launch(LaunchRequest(instance_id, spec, port, env, log_path, workdir))

    def _collect_launch(self, svc: ServiceRow | None, inst: InstanceRow) -> bool:
        """Take in a finished background launch; False while it still runs (leave the instance alone)."""
        future = self._launching.get(inst.id)
        if future is None:
            return True
        if not future.done():
            return False
        del self._launching[inst.id]
        try:
            inst.handle = future.result()
        except DeployFailed as exc:
            inst.handle = ""
            if inst.state == STARTING:
                self._died_before_ready(svc, inst, f"could not start ({exc.message})")
            return inst.state != BACKOFF
        self.store.save_instance(inst)
        if inst.state == STOPPING:  # retired while it was being launched
            self.runtime.terminate(inst.handle)
        return True

    def _probe(self, spec: ServiceSpec, host: str, port: int) -> bool:
        if spec.kind == "image":
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    return True
            except OSError:
                return False
        conn = http.client.HTTPConnection(host, port, timeout=0.5)
        try:
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def log_path(self, inst: InstanceRow) -> Path:
        return self.data_dir / "logs" / inst.service / f"{inst.id}.log"

    def _log_tail(self, inst: InstanceRow, lines: int = 5) -> str:
        try:
            text = self.log_path(inst).read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
        return " | ".join(tail)[-800:] or "(empty log)"

    def _finish_delete(self, svc: ServiceRow) -> None:
        with self.store.lock:
            if svc.grp:
                self.store.leave_group(svc.grp, svc.name)
            self.store.delete_service(svc.name)
        self.metrics.forget(svc.name)
        self._remove_files(svc.name)

    def _remove_files(self, name: str) -> None:
        """Work folders, logs and caches of a deleted service: moved aside at once (a service created
        again under the name starts clean), removed off the loop (a cache may be large)."""
        storage_for(self.data_dir).forget(name)
        for folder in ("services", "logs", "cache"):
            path = self.data_dir / folder / name
            if path.exists():
                trash = path.with_name(f".deleted-{name}-{secrets.token_hex(4)}")
                path.rename(trash)
                self._launcher.submit(shutil.rmtree, trash, ignore_errors=True)

    # -- gateway -----------------------------------------------------------------------------

    def gateway_state(self) -> GatewayState:
        state = GatewayState()
        with self.store.lock:
            services = self.store.services()
            instances = self.store.instances()
            groups = self.store.groups()
            members = {grp: self.store.members(grp) for grp, _ in groups}
        by_service: dict[str, list[InstanceRow]] = defaultdict(list)
        for inst in instances:
            if inst.in_gateway:
                by_service[inst.service].append(inst)
        kinds = {}
        for svc in services:
            spec = ServiceSpec.model_validate(svc.spec)
            kinds[svc.name] = spec.kind
            image = spec.kind == "image"
            backend = Backend(f"s_{svc.name}", None if image else "/ready", strip_prefix=image)
            backend.servers = [
                Server(i.id, f"127.0.0.1:{i.port}", 1, _admin_state(i, self._promote)) for i in by_service[svc.name]
            ]
            state.backends[backend.name] = backend
            if svc.desired != DELETED:
                state.routes[svc.name] = (backend.name, svc.token)
        for grp, token in groups:
            weights = members[grp]
            shares = {
                svc: weight / n
                for svc, weight in weights.items()
                if (n := sum(1 for i in by_service[svc] if i.state == RUNNING or i.id in self._promote))
            }
            scale = 256 / max(shares.values()) if shares and max(shares.values()) > 0 else 0
            images = bool(weights) and all(kinds.get(s) == "image" for s in weights)
            check = None if any(kinds.get(s) == "image" for s in weights) else "/ready"
            backend = Backend(f"g_{grp}", check, strip_prefix=images)
            for svc in weights:
                for inst in by_service[svc]:
                    serving = inst.state == RUNNING or inst.id in self._promote
                    weight = max(1, round(shares[svc] * scale)) if serving and shares.get(svc) else 0
                    address = f"127.0.0.1:{inst.port}"
                    admin = _admin_state(inst, self._promote)
                    backend.servers.append(Server(group_server_name(inst), address, weight, admin))
            state.backends[backend.name] = backend
            state.routes[grp] = (backend.name, token)
        return state

    # -- views -------------------------------------------------------------------------------

    def describe(self, svc: ServiceRow, gateway_url: str) -> api.ServiceInfo:
        insts = self.store.instances(svc.name)
        spec = ServiceSpec.model_validate(svc.spec)
        running = [i for i in insts if i.state == RUNNING and i.version == svc.version]
        endpoint = f"{gateway_url}/api/predict/{svc.name}"
        return api.ServiceInfo(
            name=svc.name,
            status=service_status(svc, insts),
            endpoint=endpoint,
            token=svc.token,
            group=svc.grp,
            instances=max(svc.desired, 0),
            running_instances=len(running),
            version=svc.version,
            instance_list=[
                api.InstanceInfo(
                    id=i.id, address=f"127.0.0.1:{i.port}", status=INSTANCE_STATUS.get(i.state, i.state),
                    version=i.version, restarts=i.restarts, started_at=i.started_at,
                )
                for i in insts
            ],
            reason=svc.reason if svc.failed_version == svc.version else "",
            spec=redact_secrets(svc.spec),
            events=[api.Event(**e) for e in self.store.events(svc.name)],
            link=f"{endpoint}/?token={svc.token}" if spec.kind == "image" else None,
        )


def service_status(svc: ServiceRow, insts: list[InstanceRow]) -> str:
    if svc.desired == DELETED:
        return api.DELETING
    if svc.failed_version == svc.version:
        return api.FAILED
    if svc.desired == 0:
        return api.STOPPED if not insts else api.STOPPING
    if any(i.version != svc.version for i in insts):
        return api.UPDATING
    current = [i for i in insts if i.state in ACTIVE_STATES]
    ready = sum(1 for i in current if i.state == RUNNING)
    if ready == 0:
        return api.WAITING if svc.ever_ready else api.CREATING  # nothing serves (yet, or any more)
    if len(current) != svc.desired or len(insts) != len(current):
        return api.SCALING
    return api.RUNNING


def group_server_name(inst: InstanceRow) -> str:
    """``<service>.<suffix>``: the metrics collector reads the member from what precedes the dot."""
    return f"{inst.service}.{inst.id.rsplit('-', 1)[-1]}"


def _admin_state(inst: InstanceRow, promote: set[str]) -> str:
    if inst.id in promote:
        return READY
    return {RUNNING: READY, DRAINING: DRAIN}.get(inst.state, MAINT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False

