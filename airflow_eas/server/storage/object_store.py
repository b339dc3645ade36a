"""An S3-compatible object store client (``oss`` mounts, ``oss://`` locations): SigV4-signed
requests with no SDK, downloads cached per listing (keys, ETags) so unchanged objects are not
fetched twice. Hand-written until a later change moves it onto boto3.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import posixpath
import shutil
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import requests

from airflow_eas.errors import DeployFailed
from airflow_eas.server.storage.redact import scrub

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
