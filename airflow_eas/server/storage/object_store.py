"""An S3-compatible object store client (``oss`` mounts, ``oss://`` locations) on boto3: downloads
cached per listing (keys, ETags) so unchanged objects are not fetched twice. Alibaba OSS speaks
the S3 protocol with virtual-host addressing, which ``auto`` picks for ``*.aliyuncs.com``.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from airflow_eas.errors import DeployFailed
from airflow_eas.server.storage.redact import scrub

HTTP_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
ATTEMPTS = 3  # an unreachable store fails a launch in seconds, not minutes


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
    """Lists and downloads objects of an S3-compatible store."""

    def __init__(self, endpoint: str, config: OssConfig) -> None:
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        self.endpoint = endpoint.rstrip("/")
        self.config = config
        host = urllib.parse.urlsplit(self.endpoint).hostname or ""
        virtual = config.addressing == "virtual" or (config.addressing == "auto" and host.endswith(".aliyuncs.com"))
        anonymous = not (config.access_key_id and config.access_key_secret)  # a public bucket
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=config.region,
            aws_access_key_id=None if anonymous else config.access_key_id,
            aws_secret_access_key=None if anonymous else config.access_key_secret,
            config=Config(
                signature_version=UNSIGNED if anonymous else "s3v4",
                s3={"addressing_style": "virtual" if virtual else "path"},
                connect_timeout=CONNECT_TIMEOUT_S, read_timeout=HTTP_TIMEOUT_S,
                retries={"max_attempts": ATTEMPTS, "mode": "standard"},
            ),
        )

    def fetch(self, uri: str, cache: Path, where: str, *, folder: bool) -> Path:
        """A local copy of ``uri``: the object (when ``folder`` is False and it exists) or everything under it."""
        bucket, key = parse_oss_uri(uri)
        objects: list[tuple[str, str, int]] = []
        single = False
        prefix = key if not key or key.endswith("/") else key + "/"
        if not folder and key and not key.endswith("/"):
            head = self._call(where, uri, self.client.head_object, missing_ok=True, Bucket=bucket, Key=key)
            if head is not None:
                objects, single = [(key, head.get("ETag", ""), int(head.get("ContentLength", 0)))], True
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
                self._call(where, uri, self.client.download_file, Bucket=bucket, Key=obj_key, Filename=str(dest))
            try:
                os.replace(tmp, target)
            except OSError:  # someone else stored it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target / posixpath.basename(key) if single else target

    def list(self, bucket: str, prefix: str, where: str, uri: str) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in self._call(where, uri, list, pages):
            out += [(o["Key"], o.get("ETag", ""), int(o.get("Size", 0))) for o in page.get("Contents", [])]
        return out

    def _call(self, where: str, uri: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with the store's errors as one clear DeployFailed that holds no secret."""
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if missing_ok and status == 404:
                return None
            code, message = error.get("Code", ""), str(error.get("Message", ""))[:200]
            hint = " (check EAS_OSS_ACCESS_KEY_ID and EAS_OSS_ACCESS_KEY_SECRET of eas server)" if status == 403 else ""
            what = f"{code}: {message}" if code and message else (code or f"HTTP {status}")
            text = f"{where}: the object store answered {what} for {uri}{hint}"
        except (BotoCoreError, OSError) as exc:
            text = f"{where}: cannot reach the object store {self.endpoint} for {uri}: {str(exc)[:200]}"
        raise DeployFailed(scrub(text, [self.config.access_key_secret]))
