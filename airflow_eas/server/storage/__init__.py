"""Storage mounts of a service, made local before its instances start.

``mounts`` turns a spec's ``storage`` entries (and ``oss://`` locations) into host folders;
``git`` and ``object_store`` fetch what lives elsewhere; ``redact`` keeps credentials out of
every message.
"""

from airflow_eas.server.storage.git import clone
from airflow_eas.server.storage.mounts import (
    SYNTHETIC_ROOT,
    Mount,
    Prepared,
    Storage,
    mounts_for,
    storage_for,
)
from airflow_eas.server.storage.object_store import ObjectStore, OssConfig, parse_oss_uri
from airflow_eas.server.storage.redact import scrub

__all__ = [
    "SYNTHETIC_ROOT",
    "Mount",
    "ObjectStore",
    "OssConfig",
    "Prepared",
    "Storage",
    "clone",
    "mounts_for",
    "parse_oss_uri",
    "scrub",
    "storage_for",
]
