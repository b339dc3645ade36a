"""Storage mounts of a service, made local before its instances start.

Every ``storage`` entry of a spec becomes a folder on this host that the runtime shows
the instance at ``mount_path``: the process runtime through ``EAS_MOUNTS`` (the model
server rewrites paths under a mount path), the docker runtime as bind mounts.

- ``local``: the host path itself.
- ``nfs``: the process runtime cannot mount NFS (that needs root ``mount``), so an
  entry on ``127.0.0.1``/``localhost`` is read as a local path and any other server
  fails clearly; the docker runtime lets the engine mount it (an ``nfs`` volume).
- ``git``: cloned at start into the service's cache, one checkout per commit
  (``branch`` resolved with ``git ls-remote``, ``commit`` pinned). Credentials go to
  git in its environment, never on a command line or into ``.git/config``, and are
  scrubbed from every message.
- ``oss``: an S3-compatible object store (SigV4-signed requests, no SDK), downloaded
  into the service's cache, one copy per listing (keys, ETags), so unchanged objects
  are not fetched twice. It is a copy, not a live mount: writes are never uploaded.

``model_path``, ``processor_path`` and ``warm_up_data_path`` may be ``oss://`` URIs
too: they are downloaded the same way and rewritten to a mount under ``/eas/storage``.
What a version needs is prepared once and reused by its instances and restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
from dataclasses import dataclass
from pathlib import Path

from airflow_eas.errors import DeployFailed
from airflow_eas.server.storage.git import clone
from airflow_eas.server.storage.object_store import ObjectStore, OssConfig
from airflow_eas.spec import OssMount, ServiceSpec

LOCAL_NFS_SERVERS = frozenset({"127.0.0.1", "localhost", "::1"})
REMOTE_FIELDS = ("model_path", "processor_path", "warm_up_data_path")
SYNTHETIC_ROOT = "/eas/storage"  # where oss:// locations of the spec are mounted


@dataclass(frozen=True)
class Mount:
    """One folder an instance sees at ``mount_path``."""

    mount_path: str
    source: str  # a host path, or nfs://SERVER/PATH for the docker runtime
    read_only: bool

    @property
    def nfs(self) -> tuple[str, str] | None:
        if not self.source.startswith("nfs://"):
            return None
        server, _, path = self.source[len("nfs://") :].partition("/")
        return server, "/" + path


@dataclass
class Prepared:
    spec: dict  # the spec JSON the instance gets (oss:// locations rewritten to mount paths)
    mounts: list[Mount]

    @property
    def eas_mounts(self) -> dict[str, str]:
        """``EAS_MOUNTS`` for the instance: ``{mount_path: host path}``."""
        return {m.mount_path: m.source for m in self.mounts}


def mounts_for(spec: ServiceSpec, eas_mounts: dict[str, str]) -> list[Mount]:
    """The mounts behind an ``EAS_MOUNTS`` table, with each one's read-only flag from the spec."""
    read_only = {m.mount_path: getattr(getattr(m, m.kind), "readOnly", True) for m in spec.storage}
    return [Mount(path, source, read_only.get(path, True)) for path, source in eas_mounts.items()]


class Storage:
    """Prepares the storage of service versions under ``cache_root/<service>/storage``."""

    def __init__(self, cache_root: Path, oss: OssConfig | None = None) -> None:
        self.cache_root = Path(cache_root)
        self.oss = oss or OssConfig()
        self._prepared: dict[tuple[str, int, str, str], tuple[list[Mount], dict[str, str]]] = {}
        self._lock = threading.Lock()

    def prepare(self, service: str, version: int, spec: ServiceSpec, runtime: str) -> Prepared:
        """Everything the instances of this version mount; raise DeployFailed saying why not."""
        data = spec.to_json()
        # what is mounted is part of the key (a service deleted and created again starts at version 1
        # anew); the rest of the spec is not (scaling keeps the version and what its instances see)
        wanted = {k: data.get(k) for k in ("storage", *REMOTE_FIELDS)}
        digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()
        key = (service, version, runtime, digest)
        with self._lock:
            if key not in self._prepared:
                for old in [k for k in self._prepared if k[0] == service and k[1] < version - 1]:
                    del self._prepared[old]
                self._prepared[key] = self._prepare(service, spec, runtime)
            mounts, rewrites = self._prepared[key]
        return Prepared({**data, **rewrites}, list(mounts))

    def forget(self, service: str) -> None:
        """A deleted service's prepared mounts are forgotten (the control plane removes its folders)."""
        with self._lock:
            for key in [k for k in self._prepared if k[0] == service]:
                del self._prepared[key]

    def _prepare(self, service: str, spec: ServiceSpec, runtime: str) -> tuple[list[Mount], dict[str, str]]:
        cache = self.cache_root / service / "storage"
        mounts = []
        for entry in spec.storage:
            where = f"storage {entry.mount_path}"
            if entry.local is not None:
                source = _existing(entry.local.path, where, runtime)
                mounts.append(Mount(entry.mount_path, source, entry.local.readOnly))
            elif entry.nfs is not None:
                mounts.append(Mount(entry.mount_path, _nfs_source(entry.nfs, runtime, where), entry.nfs.readOnly))
            elif entry.git is not None:
                mounts.append(Mount(entry.mount_path, str(clone(entry.git, cache / "git", where)), True))
            elif entry.oss is not None:
                local = self._download(entry.oss.path, entry.oss, cache / "oss", where, folder=True)
                mounts.append(Mount(entry.mount_path, str(local), entry.oss.readOnly))
        rewrites = {}
        for name in REMOTE_FIELDS:
            location = getattr(spec, name)
            if isinstance(location, str) and location.startswith("oss://"):
                local = self._download(location, None, cache / "oss", name, folder=False)
                mount_path = f"{SYNTHETIC_ROOT}/{name}"
                folder, inside = (local, "") if local.is_dir() else (local.parent, local.name)
                mounts.append(Mount(mount_path, str(folder), True))
                rewrites[name] = posixpath.join(mount_path, inside) if inside else mount_path
        return mounts, rewrites

    def _download(self, uri: str, mount: OssMount | None, cache: Path, where: str, *, folder: bool) -> Path:
        endpoint = (mount.endpoint if mount else None) or self.oss.endpoint
        if not endpoint:
            raise DeployFailed(
                f"{where}: {uri} needs an object-store endpoint: start eas server with EAS_OSS_ENDPOINT "
                "(and EAS_OSS_ACCESS_KEY_ID, EAS_OSS_ACCESS_KEY_SECRET) or give oss.endpoint"
            )
        return ObjectStore(endpoint, self.oss).fetch(uri, cache, where, folder=folder)


_registry: dict[Path, Storage] = {}
_registry_lock = threading.Lock()


def storage_for(data_dir: Path, oss: OssConfig | None = None) -> Storage:
    """The storage of the server that owns ``data_dir`` (configured once by the control plane)."""
    key = Path(data_dir).resolve()
    with _registry_lock:
        found = _registry.get(key)
        if found is None or oss is not None:
            found = _registry[key] = Storage(key / "cache", oss or OssConfig.from_env())
        return found


def _existing(path: str, where: str, runtime: str) -> str:
    # the docker runtime's engine checks bind sources itself, on its own host (eas server may run in a container)
    if runtime != "docker" and not os.path.exists(path):
        raise DeployFailed(f"{where}: host path {path} does not exist")
    return path


def _nfs_source(nfs, runtime: str, where: str) -> str:
    if nfs.server in LOCAL_NFS_SERVERS:
        return _existing(nfs.path, f"{where} (nfs on {nfs.server}, read as a local path)", runtime)
    if runtime == "docker":
        return f"nfs://{nfs.server}{posixpath.normpath('/' + nfs.path.lstrip('/'))}"
    raise DeployFailed(
        f"{where}: nfs server {nfs.server} cannot be mounted by the {runtime} runtime (mounting NFS needs "
        "root mount); run eas server --runtime docker, or mount it on the host and use a local mount"
    )


