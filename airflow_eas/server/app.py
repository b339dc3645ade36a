"""``eas server``: the control plane's REST API (shaped like EAS's) over the store.

Handlers validate, write the store and wake the reconciler; they never touch a
process or the gateway themselves. Every route needs the admin token.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_eas import __version__
from airflow_eas.errors import Conflict, EasError, InsufficientStorage, InvalidSpec, NotFound, PayloadTooLarge
from airflow_eas.platform.base import GroupInfo, GroupMember, GuardSettings, Metrics
from airflow_eas.server.assets import Assets
from airflow_eas.server.console import mount_console
from airflow_eas.server.front_door import FrontDoor
from airflow_eas.server.gateway import Gateway, GatewayTimings
from airflow_eas.server.guard import RolloutGuard
from airflow_eas.server.metrics import MetricsCollector
from airflow_eas.server.reconciler import DELETED, Reconciler, Timings
from airflow_eas.server.registries import RegistryCredentials
from airflow_eas.server.runtimes.process import ProcessRuntime
from airflow_eas.server.runtimes.users import instance_users
from airflow_eas.server.series import SeriesSampler, SeriesStore
from airflow_eas.server.storage import OssConfig, storage_for
from airflow_eas.server.store import Store
from airflow_eas.server.views import describe, describe_all, render_prometheus
from airflow_eas.spec import ServiceSpec, check_name, docker_auth_pair, parse_spec, restore_secrets, spec_dict

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
    max_body_mb: float = 32.0  # the gateway answers 413 to a larger request body
    pull_images: bool = field(default_factory=lambda: os.environ.get("EAS_DOCKER_PULL", "1") not in ("0", "false"))
    # docker runtime: an unused :src-* model-server image is pruned once it is this old (seconds; a fresh
    # build may be about to be used by a server not started yet)
    image_prune_age: float = field(
        default_factory=lambda: float(os.environ.get("EAS_IMAGE_PRUNE_AGE", str(24 * 3600))))
    # object store of oss:// mounts and locations (env EAS_OSS_ENDPOINT, EAS_OSS_ACCESS_KEY_ID, ...)
    oss: OssConfig = field(default_factory=OssConfig.from_env)
    # process runtime: who instances run as (see runtimes/users.py: instance_users)
    instance_user: str = field(default_factory=lambda: os.environ.get("EAS_INSTANCE_USER", "auto"))
    # the largest request body the control plane reads (a spec; 413 past it)
    max_body_bytes: int = field(default_factory=lambda: int(os.environ.get("EAS_MAX_SPEC_BYTES", str(1024 * 1024))))


class ControlPlane:
    """Everything ``eas server`` owns: store, runtime, gateway, metrics and the reconciler."""

    def __init__(self, config: ServerConfig, timings: Timings | None = None) -> None:
        self.config = config
        data_dir = config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        _restrict_data_dir(data_dir)
        self.admin_token = _admin_token(data_dir / "admin_token")
        # read-only: a Prometheus scraper holds this one, which opens /metrics and nothing else
        self.metrics_token = _admin_token(data_dir / "metrics_token")
        self.store = Store(data_dir / "state.db")
        owner = self.store.setting("server_id") or secrets.token_hex(8)
        self.store.set_setting("server_id", owner)  # marks the processes this server starts (EAS_OWNER)
        remembered = self.store.setting("metrics_port")
        # a new secret at each start: the log lines of a gateway adopted from a previous run are dropped
        # until it is reloaded with this one (adopting compares configs, so that happens at once)
        log_secret = secrets.token_hex(8)
        self.metrics = MetricsCollector(int(remembered) if remembered else 0, secret=log_secret)
        self.store.set_setting("metrics_port", str(self.metrics.port))
        timings = timings or Timings()
        self.gateway = Gateway(
            data_dir, host=config.host, port=config.gateway_port, log_port=self.metrics.port,
            timings=GatewayTimings(wait=timings.gateway_wait), max_body=round(config.max_body_mb * 1024 * 1024),
            log_secret=log_secret,
        )
        (data_dir / "gateway").chmod(0o700)  # HAProxy's config and maps hold every service token
        storage_for(data_dir, config.oss)
        self.runtime = _runtime(config, owner, self.store)
        self.reconciler = Reconciler(self.store, self.runtime, self.gateway, self.metrics, data_dir, timings)
        self.series = SeriesStore(data_dir / "series.db")
        self.sampler = SeriesSampler(self.series, self.metrics, self.store, self.runtime)
        self.gateway_url = f"http://{config.host}:{config.gateway_port}"
        self.guard = RolloutGuard(self.store, self.metrics.window, self.set_traffic)

    def start(self) -> None:
        self.metrics.start()
        self.reconciler.start()
        self.sampler.start()
        self.guard.start()

    def shutdown(self) -> None:
        self.guard.stop()
        self.sampler.stop()
        self.reconciler.stop(stop_instances=True)
        self.metrics.close()
        self.series.close()

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
            _note_ignored_cloud(self.store, spec)
        self.series.forget(spec.name)  # points of a deleted service of the same name
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
            _note_ignored_cloud(self.store, spec)
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

    def _live(self, name: str):
        svc = self.store.service(name)
        if svc.desired == DELETED:
            raise Conflict(f"service {name!r} is being deleted")
        return svc

    def describe(self, name: str) -> dict:
        return describe(self.store, self.store.service(name), self.gateway_url).to_dict()

    def list(self) -> list[dict]:
        return [info.to_dict() for info in describe_all(self.store, self.gateway_url)]

    def metrics_of(self, name: str, window: int) -> dict:
        if not self.store.has_service(name):
            raise NotFound(f"service {name!r} not found")
        w = self.metrics.window(name, window)
        return Metrics(name, w.seconds, w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms, w.rps,
                       w.statuses).to_dict()

    def series_of(self, name: str, window: str) -> dict:
        """10-second points of a service (its instances' CPU and memory too) or a group."""
        if self.store.has_service(name):
            return self.series.series(name, window, usage_of=name)
        self.store.group_token(name)  # NotFound names the group
        return self.series.series(f"group:{name}", window)

    def logs(self, name: str, lines: int, instance: str | None = None) -> str:
        """The last lines of each instance's log (the 8 latest), or of one ``instance`` alone."""
        self.store.service(name)
        folder = self.config.data_dir / "logs" / name
        files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
        if instance is not None:
            files = [p for p in files if p.stem == instance]  # names from the folder, never from the caller
            if not files:
                raise NotFound(f"no log of instance {instance!r} of service {name!r}")
        out = []
        for path in files[-8:]:
            if instance is None:
                out.append(f"==> {path.stem} <==")
            out.extend(_tail(path, lines))
        return "\n".join(out)

    # -- groups ----------------------------------------------------------------------------

    def group(self, name: str) -> dict:
        token = self.store.group_token(name)
        members = [GroupMember(s, w) for s, w in self.store.members(name).items()]
        info = GroupInfo(name, f"{self.gateway_url}/api/predict/{name}", token, members).to_dict()
        info["events"] = self.store.events(name)
        return info

    def add_group_event(self, name: str, body: Any) -> None:
        level = body.get("level", "info") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if level not in ("info", "warning", "error"):
            raise InvalidSpec(f"level: {level!r} is not one of info, warning, error")
        if not isinstance(message, str) or not message.strip():
            raise InvalidSpec("message: a non-empty string is required")
        self.store.group_token(name)
        self.store.add_event(name, level, message.strip()[:2000])

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
        self.reconciler.apply_gateway()  # the weights serve before the call returns
        return self.group(name)

    def endpoint(self, name: str) -> dict:
        if self.store.has_service(name):
            svc = self.store.service(name)
            return {"name": name, "kind": "service", "url": f"{self.gateway_url}/api/predict/{name}",
                    "token": svc.token}
        token = self.store.group_token(name)
        return {"name": name, "kind": "group", "url": f"{self.gateway_url}/api/predict/{name}", "token": token}

    def acquire_lease(self, name: str, body: Any) -> dict:
        check_name(name, "group")
        holder, ttl = _lease_holder_ttl(body)
        stable = body.get("stable")
        if stable is not None and (not isinstance(stable, str) or stable not in self.store.members(name)):
            raise InvalidSpec(f"stable: {stable!r} is not a member of group {name!r}")
        guard = _guard_settings(body.get("guard"))
        if guard and not stable:
            guard = None  # nothing to fall back to (a first release): the guard has nothing to protect
        lease = self.store.acquire_lease(name, holder, ttl, stable=stable, guard=guard)
        self.store.add_event(name, "info", f"leased to {holder} for {ttl:g} s; stable member: {stable or 'none'}"
                                           + (", guarded" if guard else ""))
        return lease.to_dict()

    def renew_lease(self, name: str, body: Any) -> dict:
        holder, ttl = _lease_holder_ttl(body)
        stable = body.get("stable")
        if stable is not None and (not isinstance(stable, str) or stable not in self.store.members(name)):
            raise InvalidSpec(f"stable: {stable!r} is not a member of group {name!r}")
        return self.store.renew_lease(name, holder, ttl, stable=stable).to_dict()

    def lease(self, name: str) -> dict:
        lease = self.store.lease(name)
        if lease is None:
            raise NotFound(f"group {name!r} is not leased")
        return lease.to_dict()


def _lease_holder_ttl(body: Any) -> tuple[str, float]:
    if not isinstance(body, dict):
        raise InvalidSpec("expected a JSON object with holder and ttl_seconds")
    holder, ttl = body.get("holder"), body.get("ttl_seconds", 3600)
    if not isinstance(holder, str) or not holder:
        raise InvalidSpec("holder: a non-empty string naming who takes the lease is required")
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 1 <= ttl <= 7 * 86400:
        raise InvalidSpec(f"ttl_seconds: {ttl!r} is not a number of seconds from 1 to 604800")
    return holder, float(ttl)


def _guard_settings(value: Any) -> GuardSettings | None:
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise InvalidSpec("guard: expected an object {window_seconds, max_error_rate, min_requests} or null")
    unknown = sorted(set(value) - {"window_seconds", "max_error_rate", "min_requests"})
    if unknown:
        raise InvalidSpec(f"guard.{unknown[0]}: unknown field")
    return GuardSettings(**value).check()


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines, reading only the end of a long log."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = f.seek(max(0, size - lines * 400))
        text = f.read().decode(errors="replace").splitlines()
    return (text[1:] if start else text)[-lines:]  # from a seek, the first line is a partial one


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _runtime(config: ServerConfig, owner: str, store: Store):
    if config.runtime == "process":
        return ProcessRuntime(owner=owner, users=instance_users(config.instance_user, store.service_uid))
    if config.runtime == "docker":
        from airflow_eas.server.runtimes.docker import DockerRuntime

        return DockerRuntime(config.data_dir, model_server_image=config.model_server_image, pull=config.pull_images,
                             prune_age=config.image_prune_age)
    raise InvalidSpec(f"--runtime {config.runtime!r}: the runtimes are: process, docker")


def _restrict_data_dir(data_dir: Path) -> None:
    """Instances pass through the data dir to their own folders but can list nothing; what holds secrets
    is the server's alone (files 0600, the gateway's and the logs' folders 0700)."""
    data_dir.chmod(0o711)
    for folder, mode in (("logs", 0o700), ("services", 0o711), ("cache", 0o711)):
        (data_dir / folder).mkdir(exist_ok=True)
        (data_dir / folder).chmod(mode)


def _admin_token(path: Path) -> str:
    if path.exists():
        path.chmod(0o600)
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


SpecBody = Annotated[dict[str, Any], Body(description="an EAS service spec (a JSON object)")]


class ScaleBody(BaseModel):
    instances: int = Field(ge=0, le=64)


class TrafficBody(BaseModel):
    weights: dict[str, int] = Field(min_length=1, examples=[{"fraud_green": 20, "fraud_blue": 80}])


class RegistryLoginBody(BaseModel):
    """A registry login: a user and a password, or EAS's ``dockerAuth`` (base64 of ``user:password``)."""

    username: str | None = None
    password: str | None = None
    dockerAuth: str | None = None


AssetBody = Annotated[dict[str, Any], Body(description="an asset: name, type (image|model|data), uri, "
                                                       "description, version")]


class ErrorBody(BaseModel):
    code: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "InvalidSpec: the body or a parameter is not valid (names the field)"},
    401: {"model": ErrorBody, "description": "Unauthorized: missing or wrong admin token"},
    404: {"model": ErrorBody, "description": "NotFound: no such service, group, asset or registry login"},
    409: {"model": ErrorBody, "description": "Conflict: the name is taken, the service is being deleted, the "
                                             "group is leased, the asset is in use"},
    413: {"model": ErrorBody, "description": "PayloadTooLarge: the body is over EAS_MAX_SPEC_BYTES"},
    507: {"model": ErrorBody, "description": "InsufficientStorage: the server's disk is full"},
}


def build_app(cp: ControlPlane) -> FastAPI:
    app = FastAPI(title="airflow-eas control plane", version=__version__,
                  description="EAS-style service API of `eas server`. Every call needs the admin token "
                              "(Authorization: Bearer <DATA_DIR/admin_token>).")

    @app.exception_handler(EasError)
    async def _eas_error(_: Request, exc: EasError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(InvalidSpec("; ".join(parts)).to_dict(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        # The console answers with HTTPExceptions too: a redirect to sign-in keeps its Location, any
        # error its headers (the console's security headers); the body is our JSON error.
        if exc.status_code < 400:
            return Response(status_code=exc.status_code, headers=exc.headers)
        error = PayloadTooLarge("request body over the control plane's limit") if exc.status_code == 413 else \
            EasError.from_response(exc.status_code, {"message": str(exc.detail)}, str(exc.detail))
        return JSONResponse(error.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        error = as_eas_error(exc)
        if error.status == 500:
            log.exception("unexpected error in a request", exc_info=exc)
        return JSONResponse(error.to_dict(), status_code=error.status)

    # Tokens are checked by the front door (FrontDoor) before any body is read.
    app.include_router(_service_routes(cp), responses=ERRORS)
    app.include_router(_service_control_routes(cp), responses=ERRORS)
    app.include_router(_group_routes(cp), responses=ERRORS)
    app.include_router(_lease_routes(cp), responses=ERRORS)
    app.include_router(_registry_routes(RegistryCredentials(cp.config.data_dir)), responses=ERRORS)
    app.include_router(_asset_routes(Assets(cp.store)), responses=ERRORS)

    @app.get("/metrics", responses={401: ERRORS[401]})
    def prometheus() -> Response:
        return Response(render_prometheus(cp.store, cp.metrics), media_type=CONTENT_TYPE_LATEST)

    mount_console(app, cp)
    return app


def guarded(cp: ControlPlane, app: FastAPI) -> FrontDoor:
    """The app behind its front door: the token and the body size are checked before a body is read."""
    return FrontDoor(app, cp.admin_token, cp.config.max_body_bytes, metrics_token=cp.metrics_token)


def as_eas_error(exc: Exception) -> EasError:
    """An error with no place in the API as the one the client should see: a full disk is a 507 that says so,
    the rest a JSON 500 naming the error."""
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))
    if full:
        return InsufficientStorage(f"the server's disk is full ({exc}); nothing was changed: free space and retry")
    return EasError(f"internal error: {type(exc).__name__}: {exc}")


def _service_routes(cp: ControlPlane) -> APIRouter:
    """Creating, reading, changing and deleting services."""
    v2 = APIRouter(prefix="/api/v2")

    @v2.post("/services", status_code=201)
    def create_service(body: SpecBody) -> dict:
        return cp.create(body)

    @v2.get("/services")
    def list_services() -> dict:
        return {"services": cp.list()}

    @v2.get("/services/{name}")
    def describe_service(name: str) -> dict:
        return cp.describe(name)

    @v2.put("/services/{name}")
    def modify_service(name: str, body: SpecBody) -> dict:
        return cp.modify(name, body)

    @v2.delete("/services/{name}", status_code=204)
    def delete_service(name: str) -> Response:
        cp.delete(name)
        return Response(status_code=204)

    return v2


def _service_control_routes(cp: ControlPlane) -> APIRouter:
    """Scaling, starting and stopping a service; its metrics and logs."""
    v2 = APIRouter(prefix="/api/v2")

    @v2.post("/services/{name}/scale")
    def scale_service(name: str, body: ScaleBody) -> dict:
        return cp.scale(name, body.instances)

    @v2.post("/services/{name}/start")
    def start_service(name: str) -> dict:
        return cp.start_service(name)

    @v2.post("/services/{name}/stop")
    def stop_service(name: str) -> dict:
        return cp.stop_service(name)

    @v2.get("/services/{name}/metrics")
    def service_metrics(name: str, window: int = 60) -> dict:
        return cp.metrics_of(name, window)

    @v2.get("/services/{name}/series")
    def service_series(name: str, window: str = "15m") -> dict:
        cp.store.service(name)
        return cp.series_of(name, window)

    @v2.get("/services/{name}/logs")
    def service_logs(name: str, lines: int = 100, instance: str | None = None) -> dict:
        return {"logs": cp.logs(name, max(1, min(lines, 5000)), instance)}

    return v2


def _group_routes(cp: ControlPlane) -> APIRouter:
    """Groups, their traffic and leases; endpoints and server info."""
    v2 = APIRouter(prefix="/api/v2")

    @v2.get("/groups")
    def list_groups() -> dict:
        return {"groups": cp.groups()}

    @v2.get("/groups/{name}")
    def describe_group(name: str) -> dict:
        return cp.group(name)

    @v2.put("/groups/{name}/traffic")
    def set_traffic(name: str, body: TrafficBody) -> dict:
        return cp.set_traffic(name, body.weights)

    @v2.post("/groups/{name}/events", status_code=204)
    def add_group_event(name: str, body: dict = Body(...)) -> Response:
        cp.add_group_event(name, body)
        return Response(status_code=204)

    @v2.get("/endpoints/{name}")
    def endpoint(name: str) -> dict:
        return cp.endpoint(name)

    @v2.get("/info")
    def info() -> dict:
        return {"gateway": cp.gateway_url, "version": __version__, "runtime": cp.runtime.name,
                "gateway_restarts": cp.gateway.restarts}

    return v2


def _lease_routes(cp: ControlPlane) -> APIRouter:
    """A group's lease: taken with its stable member (and guard), renewed, read, released."""
    v2 = APIRouter(prefix="/api/v2")

    @v2.post("/groups/{name}/lease")
    def acquire_lease(name: str, body: dict = Body(...)) -> dict:
        return cp.acquire_lease(name, body)

    @v2.put("/groups/{name}/lease")
    def renew_lease(name: str, body: dict = Body(...)) -> dict:
        return cp.renew_lease(name, body)

    @v2.get("/groups/{name}/lease")
    def get_lease(name: str) -> dict:
        return cp.lease(name)

    @v2.delete("/groups/{name}/lease", status_code=204)
    def release_lease(name: str, holder: str) -> Response:
        cp.store.release_lease(name, holder)
        return Response(status_code=204)

    return v2


def _registry_routes(credentials: RegistryCredentials) -> APIRouter:
    """Registry logins the docker runtime pulls private images with (user names shown, never passwords)."""
    v2 = APIRouter(prefix="/api/v2")

    @v2.get("/registries")
    def list_registries() -> dict:
        return {"registries": credentials.list()}

    @v2.put("/registries/{registry}")
    def set_registry_login(registry: str, body: RegistryLoginBody) -> dict:
        if body.dockerAuth:
            try:
                username, password = docker_auth_pair(body.dockerAuth)
            except ValueError as exc:
                raise InvalidSpec(f"dockerAuth: {exc}") from None
        else:
            username, password = body.username or "", body.password or ""
        return credentials.set(registry, username, password)

    @v2.delete("/registries/{registry}", status_code=204)
    def forget_registry_login(registry: str) -> Response:
        credentials.remove(registry)
        return Response(status_code=204)

    return v2


def _asset_routes(assets: Assets) -> APIRouter:
    """Assets: named images, models and data that specs refer to as ``asset:NAME`` (resolved at launch)."""
    v2 = APIRouter(prefix="/api/v2")

    @v2.post("/assets", status_code=201)
    def create_asset(body: AssetBody) -> dict:
        return assets.create(body)

    @v2.get("/assets")
    def list_assets() -> dict:
        return {"assets": assets.list()}

    @v2.get("/assets/{name}")
    def describe_asset(name: str) -> dict:
        return assets.describe(name)

    @v2.put("/assets/{name}")
    def update_asset(name: str, body: AssetBody) -> dict:
        return assets.update(name, body)

    @v2.delete("/assets/{name}", status_code=204)
    def delete_asset(name: str) -> Response:
        assets.delete(name)
        return Response(status_code=204)

    return v2


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
    app = guarded(cp, build_app(cp))
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
        f"eas server: API http://{config.host}:{config.api_port}  console http://{config.host}:{config.api_port}"
        f"/console/  gateway {cp.gateway_url}  "
        f"admin token in {config.data_dir / 'admin_token'}",
        flush=True,
    )
    try:
        server.run()
    finally:
        cp.shutdown()


def _note_ignored_cloud(store: Store, spec: ServiceSpec) -> None:
    """One host has no instance types: say so where the user looks (describe's events), not silently."""
    if spec.cloud and spec.cloud.instance_types:
        types = ", ".join(spec.cloud.instance_types)
        store.add_event(spec.name, "warning", f"cloud.computing.instances ({types}) ignored: a single host "
                        "has no instance types; they apply on a Kubernetes platform")
