"""The docker runtime: each instance is a container on the local Docker engine.

Images run unchanged (EAS: "without modification"): each container is on the platform's
bridge network ``airflow-eas`` and listens on its own ``containers[0].port`` (the model
server on 8000), which is published on the instance's free loopback port; the gateway
routes to ``127.0.0.1:<that port>`` as for processes, so several instances of one image
run side by side. ``PORT`` (the container port) and ``HOST=0.0.0.0`` are still set for
images that read them. Readiness is checked on the container's own bridge address: the
engine's port proxy accepts connections before anything listens. Containers run under a
tiny init (so SIGTERM reaches the server even as PID 1), and have Docker's restart
policy ``no``: the reconciler is the one supervisor that restarts, backs off and marks
a version Failed. The handle is the container id; labels ``eas.service``,
``eas.instance`` and ``eas.data_dir`` tie a container to the server that owns it, so a
restarted server re-adopts its containers (and only its own).

Image deployments run ``containers[0].image`` with its ``command`` split like the
process runtime does (no shell), or its ``script`` with ``/bin/sh``, or the image's own
command. Processor deployments run ``python -m airflow_eas.serving`` in the model-server
image (``model_server_image_for``: the ``-pmml`` variant for PMML, which needs a JVM).
``metadata.cpu``/``memory``/``gpu`` become CPU and memory limits and GPU device
requests. Storage mounts are bind mounts (an NFS volume for a remote ``nfs`` server);
the instance's work folder and cache are bound at their host paths, and ``EAS_DOCKER_MOUNTS``
(``/host:/container[:ro],...``) into every instance. Container output is
copied into the instance's log file by one follower thread per container.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Mount

from airflow_eas.errors import DeployFailed, PlatformUnavailable
from airflow_eas.server.registries import RegistryCredentials
from airflow_eas.server.runtimes.base import ExitStatus, LaunchRequest, Runtime, Usage
from airflow_eas.server.runtimes.docker_images import prune_source_tags, split_tag
from airflow_eas.server.storage import mounts_for
from airflow_eas.spec import ServiceSpec

MODEL_SERVER_IMAGE = "airflow-eas/model-server:latest"
NETWORK = "airflow-eas"
MODEL_SERVER_PORT = 8000  # where the model server listens inside its container
ALIVE = frozenset({"created", "running", "paused", "restarting"})


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(
        self, data_dir: Path, *, model_server_image: str = MODEL_SERVER_IMAGE, pull: bool = True,
        client: docker.DockerClient | None = None, network: str = NETWORK, prune_age: float = 24 * 3600,
    ) -> None:
        try:
            self.client = client or docker.from_env(timeout=60)
            self.client.ping()
        except DockerException as exc:
            raise PlatformUnavailable(
                f"--runtime docker: cannot reach the Docker engine ({_reason(exc)}); start dockerd "
                "(scripts/ensure-dockerd.sh does) or point DOCKER_HOST at one"
            ) from None
        self.api = self.client.api
        self.data_dir = str(Path(data_dir).resolve())
        self.model_server_image = model_server_image
        self.pull = pull
        self.prune_age = prune_age
        self.default_mounts = parse_default_mounts(os.environ.get("EAS_DOCKER_MOUNTS", ""))
        self.credentials = RegistryCredentials(Path(self.data_dir))
        self.network = network
        self._addresses: dict[str, str] = {}
        self._network_lock = threading.Lock()
        self._network_ready = False
        self._prefix = "eas-" + hashlib.sha256(self.data_dir.encode()).hexdigest()[:6]
        self._followers: dict[str, tuple[threading.Thread, Path]] = {}
        self._reported_oom: set[str] = set()
        self._cpu_seen: dict[str, tuple[int, int]] = {}  # handle -> (container CPU ns, system CPU ns)
        self.sweep()
        atexit.register(self.sweep)  # after a clean shutdown: the stopped containers go too

    # -- what to run -------------------------------------------------------------------------

    def image_and_command(self, request: LaunchRequest) -> tuple[str, list[str] | None]:
        spec = request.spec
        if spec.kind != "image":
            spec_file = request.workdir / "spec.json"
            image = model_server_image_for(self.model_server_image, spec.processor)
            return image, ["python", "-m", "airflow_eas.serving", "--spec", str(spec_file)]
        container = spec.containers[0]  # type: ignore[index]
        if container.script:
            script = request.workdir / "script.sh"
            script.write_text(container.script)
            return container.image, ["/bin/sh", str(script)]
        return container.image, shlex.split(container.command) if container.command else None

    def container_name(self, instance_id: str) -> str:
        return f"{self._prefix}-{instance_id}"

    def mounts(self, request: LaunchRequest) -> list[Mount]:
        eas_mounts = json.loads(request.env.get("EAS_MOUNTS") or "{}")
        out = [Mount(str(request.workdir), str(request.workdir), type="bind", read_only=True)]
        cache = request.env.get("EAS_CACHE_DIR")
        if cache:
            Path(cache).mkdir(parents=True, exist_ok=True)
            out.append(Mount(cache, cache, type="bind"))
        taken = {m.mount_path for m in request.spec.storage}
        out += [m for m in self.default_mounts if m["Target"] not in taken]  # the spec's own mount wins
        for m in mounts_for(request.spec, eas_mounts):
            nfs = m.nfs
            if nfs is None:
                out.append(Mount(m.mount_path, m.source, type="bind", read_only=m.read_only))
                continue
            server, path = nfs
            options = f"addr={server},{'ro' if m.read_only else 'rw'},nfsvers=4"
            out.append(Mount(
                m.mount_path, None, type="volume", read_only=m.read_only, no_copy=True,
                driver_config=docker.types.DriverConfig("local", {"type": "nfs", "o": options, "device": f":{path}"}),
            ))
        return out

    @staticmethod
    def container_port(spec: ServiceSpec) -> int:
        return spec.containers[0].port if spec.containers else MODEL_SERVER_PORT

    def create_args(self, request: LaunchRequest) -> dict:
        spec = request.spec
        image, command = self.image_and_command(request)
        port = self.container_port(spec)
        env = dict(request.env)
        env["PORT"] = str(port)
        env["HOST"] = "0.0.0.0"  # the container's own network: only the published loopback port reaches it
        env["EAS_MOUNTS"] = "{}"  # inside the container every mount is where the spec says
        meta = spec.metadata
        args: dict = {
            "image": image, "command": command, "name": self.container_name(request.instance_id),
            "environment": env, "network": self.network, "ports": {f"{port}/tcp": ("127.0.0.1", request.port)},
            "init": True, "detach": True,
            "restart_policy": {"Name": "no"}, "mounts": self.mounts(request),
            "labels": {"eas.service": spec.name, "eas.instance": request.instance_id,
                       "eas.data_dir": self.data_dir, "eas.port": str(port)},
        }
        if spec.kind != "image":
            args["working_dir"] = str(request.workdir)
        if meta.cpu:
            args["nano_cpus"] = int(meta.cpu * 1e9)
        if meta.memory:
            args["mem_limit"] = f"{meta.memory}m"
        if meta.gpu:
            args["device_requests"] = [DeviceRequest(count=meta.gpu, capabilities=[["gpu"]])]
        return args

    # -- Runtime -----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> str:
        args = self.create_args(request)
        self._ensure_network()
        self._ensure_image(args["image"], self.credentials.auth_for(request.spec, args["image"]))
        self._remove_stale(args["name"])
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            container = self.client.containers.create(**args)
        except (APIError, DockerException) as exc:
            if "network" in _reason(exc):
                self._network_ready = False  # removed behind our back: made again on the next launch
            raise DeployFailed(f"cannot create a container of {args['image']}: {_reason(exc)}") from None
        try:
            container.start()
        except (APIError, DockerException) as exc:
            self._remove(container.id)
            raise DeployFailed(f"cannot start a container of {args['image']}: {_reason(exc)}") from None
        self._follow(container.id, request.log_path, since=None)
        return container.id

    def poll(self, handle: str) -> ExitStatus | None:
        try:
            state = self.api.inspect_container(handle)["State"]
        except NotFound:
            return ExitStatus(None)
        except (APIError, DockerException, OSError):
            return None  # the engine is busy or restarting: nothing is known to have ended
        if state.get("Status") in ALIVE:
            return None
        self._settle_logs(handle)
        code = int(state.get("ExitCode", 0))
        if state.get("OOMKilled") and handle not in self._reported_oom:
            self._reported_oom.add(handle)
            self._note(handle, "the container was killed for going over its memory limit (metadata.memory)")
        return ExitStatus(-(code - 128) if 128 < code < 160 else code)

    def terminate(self, handle: str) -> None:
        self._signal(handle, "SIGTERM")

    def kill(self, handle: str) -> None:
        self._signal(handle, "SIGKILL")

    def adopt(self, handle: str) -> bool:
        if not handle:
            return False
        try:
            info = self.api.inspect_container(handle)
        except (APIError, DockerException):
            return False
        labels = info["Config"].get("Labels") or {}
        if labels.get("eas.data_dir") != self.data_dir or info["State"].get("Status") not in ALIVE:
            return False
        log_path = Path(self.data_dir) / "logs" / labels.get("eas.service", "") / f"{labels.get('eas.instance')}.log"
        since = log_path.stat().st_mtime if log_path.exists() else None
        self._follow(handle, log_path, since=since)
        return True

    def probe_address(self, handle: str, port: int) -> tuple[str, int]:
        address = self._addresses.get(handle) if handle else None
        if address is None and handle:
            try:
                info = self.api.inspect_container(handle)
            except (APIError, DockerException, OSError):
                info = None
            if info is not None:
                ip = (info["NetworkSettings"]["Networks"].get(self.network) or {}).get("IPAddress")
                bound = (info["Config"].get("Labels") or {}).get("eas.port")
                if ip and bound:
                    address = self._addresses[handle] = f"{ip}:{bound}"
        if address is None:
            return "127.0.0.1", port
        host, _, inner = address.rpartition(":")
        return host, int(inner)

    def not_listening(self, spec: ServiceSpec, port: int) -> str:
        if spec.kind == "image":
            inner = self.container_port(spec)
            return (f"nothing answered on containers[0].port {inner} inside the container: the image must listen "
                    f"there on all addresses (0.0.0.0), or set containers[0].port to the port it listens on")
        return super().not_listening(spec, port)

    def usage(self, handle: str) -> Usage | None:
        """From ``docker stats`` taken one-shot (no one-second wait); CPU is the share since the last call."""
        try:
            stats = self.api.stats(handle, stream=False, one_shot=True)
        except (APIError, DockerException, OSError):
            return None
        cpu_stats = stats.get("cpu_stats") or {}
        container_ns = int((cpu_stats.get("cpu_usage") or {}).get("total_usage") or 0)
        system_ns = int(cpu_stats.get("system_cpu_usage") or 0)
        if not container_ns and not system_ns:
            return None  # not running
        cores = int(cpu_stats.get("online_cpus") or 1)
        before = self._cpu_seen.get(handle)
        self._cpu_seen[handle] = (container_ns, system_ns)
        cpu = 0.0
        if before and system_ns > before[1]:
            # system_cpu_usage counts every core: scale to percent of one core, as `docker stats` shows
            cpu = (container_ns - before[0]) / (system_ns - before[1]) * cores * 100
        memory = stats.get("memory_stats") or {}
        cache = (memory.get("stats") or {}).get("inactive_file", 0)  # docker stats leaves the page cache out
        return Usage(round(max(cpu, 0.0), 1), max(int(memory.get("usage") or 0) - int(cache), 0))

    def release(self, handle: str) -> None:
        self._cpu_seen.pop(handle, None)
        self._addresses.pop(handle, None)
        self._settle_logs(handle)
        self._remove(handle)
        self._followers.pop(handle, None)
        self._reported_oom.discard(handle)

    def listens(self, handle: str, port: int) -> bool | None:
        """Whether something in the container's network namespace listens on its own port (the one probed;
        the published loopback port is Docker's). Read from /proc/PID/net of the container's first process:
        the host's socket tables do not show a bridge network's sockets (None where that cannot be read, e.g.
        this server runs in a container of its own)."""
        _, inner = self.probe_address(handle, port)
        try:
            pid = int(self.api.inspect_container(handle)["State"]["Pid"] or 0)
        except (APIError, DockerException, OSError, KeyError, TypeError, ValueError):
            return None
        return namespace_listens(pid, inner) if pid else None

    def prune_images(self, in_use: Callable[[], set[str]]) -> list[str]:
        """The unused ``:src-*`` tags of this server's model-server repositories (runtimes/docker_images.py)."""
        mine = {self.model_server_image, model_server_image_for(self.model_server_image, "pmml")}
        return prune_source_tags(self.api, {split_tag(i)[0] for i in mine}, in_use() | mine, min_age=self.prune_age)

    def end_unknown(self, known: set[str]) -> list[str | int]:
        """Remove this server's running containers whose id the store does not hold (created just before a
        crash, before the id was saved)."""
        try:
            running = self.api.containers(filters={"label": f"eas.data_dir={self.data_dir}"})
        except (APIError, DockerException, OSError):
            return []
        unknown = [c["Id"] for c in running if c["Id"] not in known]
        for cid in unknown:
            self._remove(cid)
        return unknown

    def sweep(self) -> None:
        """Remove this server's containers that have ended (running ones stay: they are adopted)."""
        try:
            ended = self.api.containers(
                all=True, filters={"label": f"eas.data_dir={self.data_dir}", "status": ["exited", "dead", "created"]}
            )
        except (APIError, DockerException, OSError):
            return
        for c in ended:
            self._remove(c["Id"])

    # -- helpers -----------------------------------------------------------------------------

    def _ensure_network(self) -> None:
        """The platform's bridge network, made on first use and shared by every server on this engine."""
        with self._network_lock:
            if self._network_ready:
                return
            try:
                if not self._networks():
                    self.api.create_network(self.network, driver="bridge", labels={"eas.network": "1"})
                # two servers may have made it at once (the engine allows equal names): the oldest stays
                extra = sorted(self._networks(), key=lambda n: (n["Created"], n["Id"]))[1:]
                for net in extra:
                    try:
                        self.api.remove_network(net["Id"])
                    except (APIError, DockerException):
                        pass  # in use already: the engine then resolves the name to the one we keep
            except (APIError, DockerException) as exc:
                raise DeployFailed(f"cannot create the docker network {self.network!r}: {_reason(exc)}") from None
            self._network_ready = True

    def _networks(self) -> list[dict]:
        return [n for n in self.api.networks(names=[self.network]) if n["Name"] == self.network]

    def _ensure_image(self, image: str, auth: dict[str, str] | None) -> None:
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        except (APIError, DockerException) as exc:
            raise DeployFailed(f"image {image!r}: {_reason(exc)}") from None
        if not self.pull:
            raise DeployFailed(f"image {image!r} is not on this Docker engine (and pulling is off)")
        try:
            self.client.images.pull(image, auth_config=auth)
        except (APIError, DockerException) as exc:
            raise DeployFailed(
                f"image {image!r} is not on this Docker engine and pulling it failed: {_reason(exc)}"
            ) from None

    def _remove_stale(self, name: str) -> None:
        """An earlier container of the same instance (it died and is being restarted) gives way."""
        try:
            self.client.containers.get(name).remove(force=True, v=True)
        except NotFound:
            pass
        except (APIError, DockerException) as exc:
            raise DeployFailed(f"cannot remove the old container {name}: {_reason(exc)}") from None

    def _remove(self, handle: str) -> None:
        try:
            self.api.remove_container(handle, force=True, v=True)  # v: an anonymous NFS volume goes too
        except NotFound:
            pass
        except (APIError, DockerException):
            pass  # being removed already; a later release or the engine cleans up

    def _signal(self, handle: str, sig: str) -> None:
        if not handle:
            return
        try:
            self.api.kill(handle, signal=sig)
        except (APIError, DockerException):
            pass  # not running (any more)

    def _follow(self, handle: str, log_path: Path, since: float | None) -> None:
        thread = threading.Thread(
            target=self._copy_logs, args=(handle, log_path, since), name=f"eas-logs-{handle[:12]}", daemon=True
        )
        self._followers[handle] = (thread, log_path)
        thread.start()

    def _copy_logs(self, handle: str, log_path: Path, since: float | None) -> None:
        try:
            stream = self.api.logs(handle, stream=True, follow=True, since=since)
            with open(log_path, "ab", buffering=0) as out:
                for chunk in stream:
                    out.write(chunk)
        except (APIError, DockerException, OSError, ValueError):
            pass  # the container went away: its output up to then is in the file

    def _settle_logs(self, handle: str) -> None:
        """Let the follower write the last lines of an ended container (the reconciler reads them next)."""
        entry = self._followers.get(handle)
        if entry is not None:
            entry[0].join(timeout=2)

    def _note(self, handle: str, line: str) -> None:
        entry = self._followers.get(handle)
        if entry is not None:
            with open(entry[1], "a") as out:
                out.write(f"[eas docker runtime] {time.strftime('%H:%M:%S')} {line}\n")


def namespace_listens(pid: int, port: int) -> bool | None:
    """Whether a TCP socket listens on ``port`` in the network namespace of ``pid`` (None: unreadable)."""
    wanted, seen = f"{port:04X}", False
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        seen = True
        # columns: sl local_address rem_address st ...; local is HEXIP:HEXPORT, st 0A is LISTEN
        if any(len(f := row.split()) > 3 and f[1].rsplit(":", 1)[1] == wanted and f[3] == "0A" for row in rows):
            return True
    return False if seen else None


def parse_default_mounts(value: str) -> list[Mount]:
    """``EAS_DOCKER_MOUNTS``: ``HOST:CONTAINER[:ro],...`` bound into every instance (e.g. a models folder
    at /models, where file:///models/... paths of specs point)."""
    mounts = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0].startswith("/") or not parts[1].startswith("/") or (
                len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise PlatformUnavailable(f"EAS_DOCKER_MOUNTS: {item!r} is not /HOST/PATH:/CONTAINER/PATH[:ro|:rw]")
        mounts.append(Mount(parts[1], parts[0], type="bind", read_only=parts[2:] == ["ro"]))
    return mounts


def model_server_image_for(image: str, processor: str | None) -> str:
    """The model-server image of a processor: PMML runs on a JVM, which only ``<repo>-pmml:<tag>`` carries
    (``airflow-eas/model-server:latest`` -> ``airflow-eas/model-server-pmml:latest``)."""
    if processor != "pmml":
        return image
    repo, tag = split_tag(image)  # a digest names the other image's content: the tag stands for both
    return f"{repo}-pmml:{tag}"


def _reason(exc: Exception) -> str:
    """One line from a Docker error: the engine's explanation without the HTTP noise."""
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = " ".join(str(text).split())
    if "exec: " in text:  # "OCI runtime create failed: ...: exec: "x": executable file not found in $PATH: unknown"
        text = text[text.index("exec: "):].removesuffix(": unknown")
    return text[:300]
