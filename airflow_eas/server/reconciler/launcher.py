"""Starting instances, beside the loop: a git clone, an OSS download or an engine call must not
stall the loop (and with it every other service). The loop collects the outcome later."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from airflow_eas.server.runtimes.base import LaunchRequest, Runtime
from airflow_eas.server.storage import storage_for
from airflow_eas.server.store import InstanceRow
from airflow_eas.spec import ServiceSpec

SEARCH_ONLY = 0o711  # folders instances pass through: no listing, every secret file inside is 0600
LOG_TAIL_BYTES = 64 * 1024  # enough for the last lines of any log, read without loading a large one


class Launcher:
    def __init__(
        self, runtime: Runtime, data_dir: Path, workers: int = 4, record_delay: float = 0.0,
        resolve: Callable[[ServiceSpec], ServiceSpec] | None = None,
    ) -> None:
        self.runtime, self.data_dir = runtime, data_dir
        self.resolve = resolve  # asset:NAME as the asset points at launch time (server/assets.py)
        self.record_delay = record_delay  # tests: a crash between a launch and the saving of its handle
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eas-launch")
        self._launching: dict[str, Future[str]] = {}

    def start(self, name: str, version: int, raw_spec: dict, spec: ServiceSpec, inst: InstanceRow) -> None:
        self._launching[inst.id] = self._pool.submit(
            self._prepare_and_launch, name, version, raw_spec, spec, inst.id, inst.port, self.log_path(inst)
        )

    def outcome(self, instance_id: str) -> Future[str] | None:
        """The finished launch of an instance, taken out (None: none, or still running: see ``busy``)."""
        future = self._launching.get(instance_id)
        if future is None or not future.done():
            return None
        return self._launching.pop(instance_id)

    def busy(self, instance_id: str) -> bool:
        future = self._launching.get(instance_id)
        return future is not None and not future.done()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def _prepare_and_launch(
        self, name: str, version: int, raw_spec: dict, spec: ServiceSpec, instance_id: str, port: int, log_path: Path
    ) -> str:
        workdir = self.data_dir / "services" / name / f"v{version}"
        for folder in (workdir.parent.parent, workdir.parent):
            folder.mkdir(mode=SEARCH_ONLY, exist_ok=True)
        workdir.mkdir(mode=0o700, exist_ok=True)
        if self.resolve is not None:
            spec = self.resolve(spec)
        # local, nfs, git and oss mounts (and oss:// locations) as host folders
        prepared = storage_for(self.data_dir).prepare(name, version, spec, self.runtime.name)
        spec_file = workdir / "spec.json"  # it holds the service's env values and credentials
        spec_file.touch(mode=0o600)
        spec_file.chmod(0o600)
        spec_file.write_text(json.dumps(prepared.spec))
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
        handle = self.runtime.launch(LaunchRequest(instance_id, spec, port, env, log_path, workdir))
        if self.record_delay:
            time.sleep(self.record_delay)
        return handle

    # -- files -------------------------------------------------------------------------------

    def log_path(self, inst: InstanceRow) -> Path:
        return self.data_dir / "logs" / inst.service / f"{inst.id}.log"

    def log_tail(self, inst: InstanceRow, lines: int = 5) -> str:
        try:
            with self.log_path(inst).open("rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
        return " | ".join(tail)[-800:] or "(empty log)"

    def remove_files(self, name: str) -> None:
        """Work folders, logs and caches of a deleted service: moved aside at once (a service created
        again under the name starts clean), removed off the loop (a cache may be large)."""
        storage_for(self.data_dir).forget(name)
        for folder in ("services", "logs", "cache"):
            path = self.data_dir / folder / name
            if path.exists():
                trash = path.with_name(f".deleted-{name}-{secrets.token_hex(4)}")
                path.rename(trash)
                self._pool.submit(shutil.rmtree, trash, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
