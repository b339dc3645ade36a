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

import base64
import datetime
import hashlib
import hmac
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import requests

from airflow_eas.errors import DeployFailed
from airflow_eas.spec import GitMount, OssMount, ServiceSpec

LOCAL_NFS_SERVERS = frozenset({"127.0.0.1", "localhost", "::1"})
REMOTE_FIELDS = ("model_path", "processor_path", "warm_up_data_path")
SYNTHETIC_ROOT = "/eas/storage"  # where oss:// locations of the spec are mounted
GIT_TIMEOUT_S = 300
HTTP_TIMEOUT_S = 60


@dataclass(frozen=True)
class OssConfig:
    """The server's object-store settings (env ``EAS_OSS_*``); a mount's ``endpoint`` wins."""

    endpoint: str | None = None
    access_key_id: str | None = None
    access_key_secret: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    addressing: str = "auto"  # path | virtual | auto (virtual for *.aliyuncs.com)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OssConfig:
        env = os.environ if env is None else env
        return cls(
            endpoint=env.get("EAS_OSS_ENDPOINT") or None,
            access_key_id=env.get("EAS_OSS_ACCESS_KEY_ID") or None,
            access_key_secret=env.get("EAS_OSS_ACCESS_KEY_SECRET") or None,
            region=env.get("EAS_OSS_REGION") or "us-east-1",
            addressing=env.get("EAS_OSS_ADDRESSING") or "auto",
        )


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


def _nfs_source(nfs, runtime: str, where: str) -> str:  # noqa: ANN001 - spec.NfsMount
    if nfs.server in LOCAL_NFS_SERVERS:
        return _existing(nfs.path, f"{where} (nfs on {nfs.server}, read as a local path)", runtime)
    if runtime == "docker":
        return f"nfs://{nfs.server}{posixpath.normpath('/' + nfs.path.lstrip('/'))}"
    raise DeployFailed(
        f"{where}: nfs server {nfs.server} cannot be mounted by the {runtime} runtime (mounting NFS needs "
        "root mount); run eas server --runtime docker, or mount it on the host and use a local mount"
    )


# -- git ---------------------------------------------------------------------------------


def scrub(text: str, secrets: list[str | None]) -> str:
    """``text`` without credentials: URL user-info and every given secret (also base64-encoded)."""
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(urllib.parse.quote(secret, safe=""), "***")
    return text


def _git_env(git: GitMount) -> dict[str, str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if git.username or git.password:
        basic = base64.b64encode(f"{git.username or ''}:{git.password or ''}".encode()).decode()
        # config through the environment: on no command line, in no .git/config
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
    return env


def _git_secrets(git: GitMount) -> list[str | None]:
    out: list[str | None] = [git.password]
    if git.username or git.password:
        out.append(base64.b64encode(f"{git.username or ''}:{git.password or ''}".encode()).decode())
    userinfo = urllib.parse.urlsplit(git.repo).password if "://" in git.repo else None
    out.append(userinfo)
    return out


def _git(args: list[str], git: GitMount, where: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=_git_env(git), capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise DeployFailed(f"{where}: git is not installed on the server host") from None
    except subprocess.TimeoutExpired:
        raise DeployFailed(f"{where}: git {args[0]} of {scrub(git.repo, _git_secrets(git))} took over "
                           f"{timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = " ".join(lines[-2:]) or f"exit code {proc.returncode}"
        raise DeployFailed(scrub(f"{where}: git {args[0]} of {git.repo} failed: {detail}", _git_secrets(git)))
    return proc.stdout


def clone(git: GitMount, cache: Path, where: str) -> Path:
    """A checkout of the repo at its commit (pinned, or the branch's head), cloned once per commit."""
    commit = git.commit
    if not commit:
        ref = f"refs/heads/{git.branch}" if git.branch else "HEAD"
        out = _git(["ls-remote", "--", git.repo, ref], git, where, timeout=60).split()
        if not out:
            raise DeployFailed(scrub(f"{where}: branch {git.branch!r} not found in {git.repo}", _git_secrets(git)))
        commit = out[0]
    repo_key = hashlib.sha256(scrub(git.repo, []).encode()).hexdigest()[:12]
    target = cache / f"{repo_key}-{commit[:40]}"
    if (target / ".git").is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=cache))
    try:
        if git.commit:
            _git(["clone", "--quiet", "--no-checkout", "--", git.repo, str(tmp)], git, where)
            _git(["checkout", "--quiet", "--detach", git.commit], git, where, cwd=tmp)
        else:
            branch = ["--branch", git.branch] if git.branch else []
            _git(["clone", "--quiet", "--depth", "1", *branch, "--", git.repo, str(tmp)], git, where)
        _git(["remote", "set-url", "origin", scrub(git.repo, [])], git, where, cwd=tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if not (target / ".git").is_dir():
            raise DeployFailed(f"{where}: cannot store the clone in {cache}: {exc.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# -- object store (S3-compatible, SigV4) ------------------------------------------------------


def parse_oss_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("oss://") :] if uri.startswith("oss://") else uri
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise DeployFailed(f"{uri}: expected oss://bucket/key")
    return bucket, key


class ObjectStore:
    """Lists and downloads objects of an S3-compatible store with SigV4-signed requests."""

    def __init__(self, endpoint: str, config: OssConfig) -> None:
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        self.endpoint = endpoint.rstrip("/")
        self.config = config
        host = urllib.parse.urlsplit(self.endpoint).hostname or ""
        self.virtual = config.addressing == "virtual" or (
            config.addressing == "auto" and host.endswith(".aliyuncs.com")
        )
        self.session = requests.Session()

    def fetch(self, uri: str, cache: Path, where: str, *, folder: bool) -> Path:
        """A local copy of ``uri``: the object (when ``folder`` is False and it exists) or everything under it."""
        bucket, key = parse_oss_uri(uri)
        objects: list[tuple[str, str, int]] = []
        single = False
        prefix = key if not key or key.endswith("/") else key + "/"
        if not folder and key and not key.endswith("/"):
            head = self._request("HEAD", bucket, key, where, uri, ok=(200, 404))
            if head.status_code == 200:
                size = int(head.headers.get("Content-Length", 0))
                objects, single = [(key, head.headers.get("ETag", ""), size)], True
        if not single:
            objects = self.list(bucket, prefix, where, uri)
            if not objects:
                raise DeployFailed(f"{where}: no objects at {uri}")
        fingerprint = hashlib.sha256(
            json.dumps([self.endpoint, bucket, key if single else prefix, single, objects]).encode()
        ).hexdigest()[:20]
        target = cache / fingerprint
        if target.is_dir():
            return target / posixpath.basename(key) if single else target
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
        try:
            for obj_key, _, _ in objects:
                rel = posixpath.basename(obj_key) if single else obj_key[len(prefix) :]
                if not rel or rel.endswith("/"):
                    continue  # a folder marker
                dest = tmp.joinpath(*[p for p in rel.split("/") if p not in ("", ".", "..")])
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._download(bucket, obj_key, dest, where, uri)
            try:
                os.replace(tmp, target)
            except OSError:  # someone else stored it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target / posixpath.basename(key) if single else target

    def list(self, bucket: str, prefix: str, where: str, uri: str) -> list[tuple[str, str, int]]:
        out, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            resp = self._request("GET", bucket, "", where, uri, query=query)
            root = ET.fromstring(resp.content)
            for item in root.iter():
                if _tag(item) == "Contents":
                    fields = {_tag(c): c.text or "" for c in item}
                    out.append((fields.get("Key", ""), fields.get("ETag", ""), int(fields.get("Size") or 0)))
            truncated = next((c.text for c in root if _tag(c) == "IsTruncated"), "false")
            token = next((c.text for c in root if _tag(c) == "NextContinuationToken"), None)
            if truncated != "true" or not token:
                return out

    def _download(self, bucket: str, key: str, dest: Path, where: str, uri: str) -> None:
        resp = self._request("GET", bucket, key, where, uri, stream=True)
        try:
            with open(dest, "wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)
        except (requests.RequestException, OSError) as exc:
            raise DeployFailed(f"{where}: downloading oss://{bucket}/{key} failed: {exc}") from None
        finally:
            resp.close()

    def _request(self, method: str, bucket: str, key: str, where: str, uri: str, *, query: dict | None = None,
                 ok: tuple[int, ...] = (200,), stream: bool = False) -> requests.Response:
        parts = urllib.parse.urlsplit(self.endpoint)
        if self.virtual:
            netloc, path = f"{bucket}.{parts.netloc}", "/" + key
        else:
            netloc, path = parts.netloc, f"/{bucket}/{key}" if key else f"/{bucket}"
        path = urllib.parse.quote(path, safe="/-_.~")
        qs = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted((query or {}).items())
        )
        headers = self._sign(method, netloc, path, qs)
        url = f"{parts.scheme}://{netloc}{path}" + (f"?{qs}" if qs else "")
        try:
            resp = self.session.request(method, url, headers=headers, timeout=HTTP_TIMEOUT_S, stream=stream)
        except requests.RequestException as exc:
            reason = exc.__class__.__name__ if not str(exc) else str(exc).split(": ")[-1][:200]
            raise DeployFailed(f"{where}: cannot reach the object store {self.endpoint} for {uri}: {reason}") from None
        if resp.status_code in ok:
            return resp
        code, message = _s3_error(resp)
        resp.close()
        hint = {
            403: " (check EAS_OSS_ACCESS_KEY_ID and EAS_OSS_ACCESS_KEY_SECRET of eas server)",
            404: "",
        }.get(resp.status_code, "")
        what = f"{code}: {message}" if code else f"HTTP {resp.status_code}"
        text = f"{where}: the object store answered {what} for {uri}{hint}"
        raise DeployFailed(scrub(text, [self.config.access_key_secret]))

    def _sign(self, method: str, host: str, path: str, qs: str,
              now: datetime.datetime | None = None) -> dict[str, str]:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        if not (self.config.access_key_id and self.config.access_key_secret):
            return {"Host": host}  # anonymous: a public bucket
        signed = ";".join(sorted(headers))
        canonical = "\n".join([
            method, path, qs, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload,
        ])
        scope = f"{day}/{self.config.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.config.access_key_secret).encode()
        for part in (day, self.config.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "Host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self.config.access_key_id}/{scope}, "
                             f"SignedHeaders={signed}, Signature={signature}",
        }


def _tag(elem: ET.Element) -> str:
    return elem.tag.rsplit("}", 1)[-1]


def _s3_error(resp: requests.Response) -> tuple[str, str]:
    try:
        root = ET.fromstring(resp.content)
    except ET.ParseError:
        return "", ""
    fields = {_tag(c): (c.text or "") for c in root}
    return fields.get("Code", ""), fields.get("Message", "")[:200]
