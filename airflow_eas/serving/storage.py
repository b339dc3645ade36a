"""Where the model server finds its files: mounts, file://, http(s) archives, the cache."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from airflow_eas.serving.processor import StartupError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
DOWNLOAD_TIMEOUT_S = 60


def load_mounts(env: dict[str, str] | None = None) -> dict[str, str]:
    """``EAS_MOUNTS`` (JSON ``{"/mount/path": "/host/path"}``), longest mount path first."""
    raw = (env if env is not None else os.environ).get("EAS_MOUNTS", "").strip()
    if not raw:
        return {}
    try:
        mounts = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StartupError(f"EAS_MOUNTS is not valid JSON: {exc}", 2) from None
    if not isinstance(mounts, dict) or not all(isinstance(v, str) for v in mounts.values()):
        raise StartupError('EAS_MOUNTS must be a JSON object {"/mount/path": "/host/path"}', 2)
    norm = {posixpath.normpath(k): v for k, v in mounts.items()}
    return dict(sorted(norm.items(), key=lambda kv: -len(kv[0])))


def cache_dir(service: str, env: dict[str, str] | None = None) -> Path:
    """``EAS_CACHE_DIR``, or a per-service folder under the system temp dir."""
    raw = (env if env is not None else os.environ).get("EAS_CACHE_DIR")
    path = Path(raw) if raw else Path(tempfile.gettempdir()) / "airflow-eas-cache" / service
    path.mkdir(parents=True, exist_ok=True)
    return path


def apply_mounts(path: str, mounts: dict[str, str]) -> str:
    """Rewrite a path under a mount path to the host path it is mounted from."""
    norm = posixpath.normpath(path)
    for mount, host in mounts.items():
        if norm == mount:
            return host
        if norm.startswith(mount.rstrip("/") + "/"):
            return os.path.join(host, norm[len(mount.rstrip("/")) + 1 :])
    return path


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


class Resolver:
    """Turns a spec location (local path, file://, http(s)://) into a local path."""

    def __init__(self, service: str, mounts: dict[str, str], cache: Path) -> None:
        self.service = service
        self.mounts = mounts
        self.cache = cache

    def resolve(self, location: str, what: str, *, unpack: bool = True) -> Path:
        """A local file or folder for ``location``; archives are unpacked into the cache."""
        parsed = urllib.parse.urlparse(location)
        scheme = parsed.scheme.lower()
        if scheme in ("http", "https"):
            local = self._download(location, what)
        elif scheme == "file":
            local = Path(apply_mounts(urllib.parse.unquote(parsed.path), self.mounts))
        elif scheme in ("",) or (len(scheme) == 1 and os.name == "nt"):
            local = Path(apply_mounts(location, self.mounts))
        else:
            raise StartupError(
                f"{what} {location!r}: scheme {scheme}:// is not readable by the model server; "
                "mount it with storage and give the mount path, or use file:// or http(s)://"
            )
        if not local.exists():
            hint = f" (from {location})" if str(local) != location else ""
            raise StartupError(f"{what} {local} does not exist{hint}")
        if unpack and local.is_file() and is_archive(local.name):
            return self._unpack(local, what, key=location)
        return local

    def _download(self, url: str, what: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        name = posixpath.basename(urllib.parse.urlparse(url).path) or "download"
        target = self.cache / "downloads" / digest / name
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}.part")
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
        except urllib.error.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise StartupError(f"{what}: downloading {url} answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or exc
            raise StartupError(f"{what}: cannot download {url}: {reason}") from None
        os.replace(tmp, target)
        return target

    def _unpack(self, archive: Path, what: str, key: str) -> Path:
        stat = archive.stat()
        digest = hashlib.sha256(f"{key}|{archive}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[
            :16
        ]
        target = self.cache / "unpacked" / digest
        if target.is_dir():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.cache))
        try:
            if archive.name.lower().endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(tmp, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StartupError(f"{what}: cannot unpack {archive.name}: {exc}") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another instance of the service unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def find_model_file(path: Path, suffixes: tuple[str, ...], what: str) -> Path:
    """``path`` itself, or the one model file (by suffix) inside the folder ``path``."""
    if path.is_file():
        return path
    found = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(suffixes)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not found:
        raise StartupError(f"{what}: no model file ({', '.join(suffixes)}) in {path}")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(path)) for p in found[:5])
        raise StartupError(f"{what}: several model files in {path} ({names}); point model_path at one")
    return found[0]


def find_entry(root: Path, entry: str) -> Path:
    """``entry`` inside ``root`` (or inside the single top-level folder of an unpacked archive)."""
    candidate = root / entry
    if candidate.is_file():
        return candidate
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / entry).is_file():
        return subdirs[0] / entry
    raise StartupError(f"processor_entry {entry!r} not found in processor_path {root}")
