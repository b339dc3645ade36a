"""``eas server``: the control plane's REST API (shaped like EAS's) over the store.

Handlers validate, write the store and wake the reconciler; they never touch a
process or the gateway themselves. Every route needs the admin token.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from airflow_eas import __version__
from airflow_eas.errors import Conflict, EasError, InvalidSpec, NotFound, Unauthorized
from airflow_eas.platform.base import GroupInfo, GroupMember, Lease, Metrics
from airflow_eas.server.gateway import Gateway
from airflow_eas.server.image_api import image_router
from airflow_eas.server.metrics import MetricsCollector
from airflow_eas.server.prometheus import render_prometheus
from airflow_eas.server.reconciler import DELETED, Reconciler, Timings
from airflow_eas.server.registries import RegistryCredentials
from airflow_eas.server.runtimes.process import ProcessRuntime
from airflow_eas.server.storage import OssConfig, storage_for
from airflow_eas.server.store import Store
from airflow_eas.spec import check_name, parse_spec, restore_secrets, spec_dict

log = logging.getLogger("airflow_eas.server")


@dataclass
class ServerConfig:
    data_dir: Path
    api_port: int = 8600
    gateway_port: int = 8700
    host: str = "127.0.0.1"
    runtime: str = "process"
    # docker runtime: the image of processor deployments; pull images missing from the engine
    model_server_image: str = field(
        default_factory=lambda: os.environ.get("EAS_MODEL_SERVER_IMAGE", "airflow-eas/model-server:latest"))
    pull_images: bool = field(default_factory=lambda: os.environ.get("EAS_DOCKER_PULL", "1") not in ("0", "false"))
    # object store of oss:// mounts and locations (env EAS_OSS_ENDPOINT, EAS_OSS_ACCESS_KEY_ID, ...)
    oss: OssConfig = field(default_factory=OssConfig.from_env)


class ControlPlane:
    """Everything ``eas server`` owns: store, runtime, gateway, metrics and the reconciler."""

    def __init__(self, config: ServerConfig, timings: Timings | None = None) -> None:
        self.config = config
        data_dir = config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = _admin_token(data_dir / "admin_token")
        self.store = Store(data_dir / "state.db")
        remembered = self.store.setting("metrics_port")
        self.metrics = MetricsCollector(int(remembered) if remembered else 0)
        self.store.set_setting("metrics_port", str(self.metrics.port))
        self.gateway = Gateway(
            data_dir, host=config.host, port=config.gateway_port, log_port=self.metrics.port
        )
        storage_for(data_dir, config.oss)
        self.runtime = _runtime(config)
        self.reconciler = Reconciler(self.store, self.runtime, self.gateway, self.metrics, data_dir, timings)
        self.gateway_url = f"http://{config.host}:{config.gateway_port}"

    def start(self) -> None:
        self.metrics.start()
        self.reconciler.start()

    def shutdown(self) -> None:
        self.reconciler.stop(stop_instances=True)
        self.metrics.close()

    # -- services --------------------------------------------------------------------------

    def create(self, body: Any) -> dict:
        spec = parse_spec(body)
        token = spec.token or secrets.token_urlsafe(24)
        with self.store.lock:
            self.store.insert_service(spec.name, spec.to_json(), spec.metadata.instance, token, spec.group)
            if spec.group:
                try:
                    self.store.join_group(spec.group, spec.name, secrets.token_urlsafe(24))
                except EasError:
                    self.store.delete_service(spec.name)
                    raise
            self.store.add_event(spec.name, "info", f"service created with {spec.metadata.instance} instance(s)")
        self.reconciler.wake()
        return self.describe(spec.name)

    def modify(self, name: str, body: Any) -> dict:
        body = spec_dict(body)
        body = restore_secrets({**body, "name": body.get("name", name)}, self.store.service(name).spec)
        spec = parse_spec(body)
        if spec.name != name:
            raise InvalidSpec(f"name: the spec names {spec.name!r} but the URL names {name!r}")
        with self.store.lock:
            svc = self.store.service(name)
            if svc.desired == DELETED:
                raise Conflict(f"service {name!r} is being deleted")
            new = spec.to_json()
            if spec.token is None:
                new.pop("token", None)
            token = spec.token or svc.token
            if new == svc.spec and svc.failed_version != svc.version:
                return self.describe(name)  # nothing changed: a retried deploy is a no-op
            if spec.group != svc.grp:
                if svc.grp:
                    self.store.leave_group(svc.grp, name)
                if spec.group:
                    self.store.join_group(spec.group, name, secrets.token_urlsafe(24))
            desired = spec.metadata.instance if svc.desired != 0 else 0
            self.store.update_service(
                name, spec=new, version=svc.version + 1, desired=desired, token=token, grp=spec.group,
                failed_version=None, reason="",
            )
            self.store.add_event(name, "info", f"version {svc.version + 1}: rolling update started")
        self.reconciler.wake()
        return self.describe(name)

    def scale(self, name: str, instances: Any) -> dict:
        if not isinstance(instances, int) or isinstance(instances, bool) or not 0 <= instances <= 64:
            raise InvalidSpec(f"instances: {instances!r} is not a whole number from 0 to 64")
        with self.store.lock:
            svc = self._live(name)
            spec = {**svc.spec, "metadata": {**svc.spec.get("metadata", {}), "instance": instances}}
            self.store.update_service(name, spec=spec, desired=instances)
            self.store.add_event(name, "info", f"scaled to {instances} instance(s)")
        self.reconciler.wake()
        return self.describe(name)

    def start_service(self, name: str) -> dict:
        with self.store.lock:
            svc = self._live(name)
            wanted = int(svc.spec.get("metadata", {}).get("instance", 1))
            self.store.update_service(name, desired=wanted, failed_version=None, reason="")
            self.store.add_event(name, "info", f"started with {wanted} instance(s)")
        self.reconciler.wake()
        return self.describe(name)

    def stop_service(self, name: str) -> dict:
        with self.store.lock:
            self._live(name)
            self.store.update_service(name, desired=0)
            self.store.add_event(name, "info", "stopping: instances drain, then exit")
        self.reconciler.wake()
        return self.describe(name)

    def delete(self, name: str) -> None:
        with self.store.lock:
            self.store.service(name)
            self.store.update_service(name, desired=DELETED)
        self.reconciler.wake()

    def _live(self, name: str):  # noqa: ANN202
        svc = self.store.service(name)
        if svc.desired == DELETED:
            raise Conflict(f"service {name!r} is being deleted")
        return svc

    def describe(self, name: str) -> dict:
        return self.reconciler.describe(self.store.service(name), self.gateway_url).to_dict()

    def list(self) -> list[dict]:
        return [self.reconciler.describe(s, self.gateway_url).to_dict() for s in self.store.services()]

    def metrics_of(self, name: str, window: int) -> dict:
        if not self.store.has_service(name):
            raise NotFound(f"service {name!r} not found")
        w = self.metrics.window(name, window)
        return Metrics(name, w.seconds, w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms, w.rps).to_dict()

    def logs(self, name: str, lines: int) -> str:
        self.store.service(name)
        folder = self.config.data_dir / "logs" / name
        files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
        out = []
        for path in files[-8:]:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"==> {path.stem} <==")
            out.extend(text)
        return "\n".join(out)

    # -- groups ----------------------------------------------------------------------------

    def group(self, name: str) -> dict:
        token = self.store.group_token(name)
        members = [GroupMember(s, w) for s, w in self.store.members(name).items()]
        return GroupInfo(name, f"{self.gateway_url}/api/predict/{name}", token, members).to_dict()

    def groups(self) -> list[dict]:
        return [self.group(name) for name, _ in self.store.groups()]

    def set_traffic(self, name: str, weights: Any) -> dict:
        if not isinstance(weights, dict) or not weights:
            raise InvalidSpec('weights: expected an object of member -> weight, e.g. {"fraud_green": 20}')
        for member, weight in weights.items():
            if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
                raise InvalidSpec(f"weights.{member}: {weight!r} is not a whole number from 0 to 100")
        with self.store.lock:
            self.store.group_token(name)
            self.store.set_weights(name, weights)
            for member, weight in weights.items():
                self.store.add_event(member, "info", f"group {name}: weight set to {weight}")
        self.reconciler.wake()
        self.reconciler.tick_now()
        return self.group(name)

    def endpoint(self, name: str) -> dict:
        if self.store.has_service(name):
            svc = self.store.service(name)
            return {"name": name, "kind": "service", "url": f"{self.gateway_url}/api/predict/{name}",
                    "token": svc.token}
        token = self.store.group_token(name)
        return {"name": name, "kind": "group", "url": f"{self.gateway_url}/api/predict/{name}", "token": token}

    def acquire_lease(self, name: str, body: Any) -> dict:
        holder = body.get("holder") if isinstance(body, dict) else None
        ttl = body.get("ttl_seconds", 3600) if isinstance(body, dict) else None
        if not isinstance(holder, str) or not holder:
            raise InvalidSpec("holder: a non-empty string naming who takes the lease is required")
        if not isinstance(ttl, (int, float)) or not 1 <= ttl <= 7 * 86400:
            raise InvalidSpec(f"ttl_seconds: {ttl!r} is not a number of seconds from 1 to 604800")
        check_name(name, "group")
        expires = self.store.acquire_lease(name, holder, float(ttl))
        return Lease(name, holder, expires).to_dict()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _runtime(config: ServerConfig):  # noqa: ANN202
    if config.runtime == "process":
        return ProcessRuntime()
    if config.runtime == "docker":
        from airflow_eas.server.runtimes.docker import DockerRuntime

        return DockerRuntime(config.data_dir, model_server_image=config.model_server_image, pull=config.pull_images)
    raise InvalidSpec(f"--runtime {config.runtime!r}: the runtimes are: process, docker")


def _admin_token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def build_app(cp: ControlPlane) -> FastAPI:
    app = FastAPI(title="airflow-eas control plane", version=__version__,
                  description="EAS-style service API of `eas server`. Every call needs the admin token.")

    def auth(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if given.lower().startswith("bearer "):
            given = given[7:]
        if not hmac.compare_digest(given.strip().encode(), cp.admin_token.encode()):
            raise Unauthorized("missing or wrong admin token (Authorization: Bearer <DATA_DIR/admin_token>)")

    @app.exception_handler(EasError)
    async def _eas_error(_: Request, exc: EasError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(InvalidSpec("; ".join(parts)).to_dict(), status_code=400)

    v2 = APIRouter(prefix="/api/v2", dependencies=[Depends(auth)])

    @v2.post("/services", status_code=201)
    def create_service(body: Any = Body(...)) -> dict:
        return cp.create(body)

    @v2.get("/services")
    def list_services() -> dict:
        return {"services": cp.list()}

    @v2.get("/services/{name}")
    def describe_service(name: str) -> dict:
        return cp.describe(name)

    @v2.put("/services/{name}")
    def modify_service(name: str, body: Any = Body(...)) -> dict:
        return cp.modify(name, body)

    @v2.post("/services/{name}/scale")
    def scale_service(name: str, body: dict = Body(...)) -> dict:
        return cp.scale(name, body.get("instances"))

    @v2.post("/services/{name}/start")
    def start_service(name: str) -> dict:
        return cp.start_service(name)

    @v2.post("/services/{name}/stop")
    def stop_service(name: str) -> dict:
        return cp.stop_service(name)

    @v2.delete("/services/{name}", status_code=204)
    def delete_service(name: str) -> Response:
        cp.delete(name)
        return Response(status_code=204)

    @v2.get("/services/{name}/metrics")
    def service_metrics(name: str, window: int = 60) -> dict:
        return cp.metrics_of(name, window)

    @v2.get("/services/{name}/logs")
    def service_logs(name: str, lines: int = 100) -> dict:
        return {"logs": cp.logs(name, max(1, min(lines, 5000)))}

    @v2.get("/groups")
    def list_groups() -> dict:
        return {"groups": cp.groups()}

    @v2.get("/groups/{name}")
    def describe_group(name: str) -> dict:
        return cp.group(name)

    @v2.put("/groups/{name}/traffic")
    def set_traffic(name: str, body: dict = Body(...)) -> dict:
        return cp.set_traffic(name, body.get("weights"))

    @v2.post("/groups/{name}/lease")
    def acquire_lease(name: str, body: dict = Body(...)) -> dict:
        return cp.acquire_lease(name, body)

    @v2.delete("/groups/{name}/lease", status_code=204)
    def release_lease(name: str, holder: str) -> Response:
        cp.store.release_lease(name, holder)
        return Response(status_code=204)

    @v2.get("/endpoints/{name}")
    def endpoint(name: str) -> dict:
        return cp.endpoint(name)

    @v2.get("/info")
    def info() -> dict:
        return {"gateway": cp.gateway_url, "version": __version__, "runtime": cp.runtime.name,
                "gateway_restarts": cp.gateway.restarts}

    @app.get("/metrics", dependencies=[Depends(auth)])
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(render_prometheus(cp), media_type="text/plain; version=0.0.4")

    app.include_router(v2)
    app.include_router(image_router(cp.store, RegistryCredentials(cp.config.data_dir)), prefix="/api/v2",
                       dependencies=[Depends(auth)])

    return app


def serve(config: ServerConfig) -> None:
    """Run the control plane in the foreground until SIGTERM or SIGINT."""
    import uvicorn

    if not _port_free(config.host, config.api_port):
        raise EasError(f"--api-port {config.api_port}: the port is in use on {config.host}")
    gateway_adoptable = Gateway.running_in(config.data_dir)  # ours, left serving by a crashed server
    if not gateway_adoptable and not _port_free(config.host, config.gateway_port):
        raise EasError(f"--gateway-port {config.gateway_port}: the port is in use on {config.host}")
    cp = ControlPlane(config)
    cp.start()
    app = build_app(cp)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.api_port, log_level="warning",
                                           access_log=False))
    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()
        server.should_exit = True

    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"eas server: API http://{config.host}:{config.api_port}  gateway {cp.gateway_url}  "
        f"admin token in {config.data_dir / 'admin_token'}",
        flush=True,
    )
    try:
        server.run()
    finally:
        cp.shutdown()
