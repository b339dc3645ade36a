"""What a release tells the rest of Airflow: the ``eas://<group>`` asset event and OpenLineage facets.

- The promote task's outlet ``Asset("eas://<group>")`` gets an event whose extra holds the
  live ``service``, its ``version`` and ``model_path``: downstream DAGs scheduled on that
  asset run on "new model live" and can read which model it is.
- Where the OpenLineage provider is installed, deploy and promote report the model path as
  their input and the service / group as their output; without it nothing is imported.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from airflow_eas.platform.base import ServiceInfo

log = logging.getLogger(__name__)

NAMESPACE = "eas"


def release_asset_uri(group: str) -> str:
    """The asset a release of ``group`` updates."""
    return f"eas://{group}"


def release_asset(group: str) -> Any:
    from airflow.sdk import Asset

    return Asset(release_asset_uri(group))


def release_extra(group: str, info: ServiceInfo) -> dict[str, Any]:
    return {"group": group, "service": info.name, "version": info.version, "model_path": info.spec.get("model_path")}


def emit_release_event(context: Any, operator: Any, info: ServiceInfo) -> dict[str, Any]:
    """Put the release's details on the event of the operator's ``eas://<group>`` outlet (when it has one)."""
    group = info.group or ""
    extra = release_extra(group, info)
    wanted = release_asset(group) if group else None
    for outlet in getattr(operator, "outlets", None) or []:
        if wanted is not None and getattr(outlet, "uri", None) == wanted.uri:
            context["outlet_events"][outlet].extra.update(extra)
    return extra


def _dataset(uri: str | None) -> Any:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    if not uri:
        return None
    parsed = urlparse(uri)
    # OpenLineage naming: local files in namespace "file", object stores as scheme://bucket
    namespace = f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme not in ("", "file") else "file"
    return Dataset(namespace=namespace, name=parsed.path or uri)


def _lineage(model_path: str | None, output_name: str) -> Any:
    try:
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:  # the OpenLineage provider is optional
        return None
    inputs = [d for d in (_dataset(model_path),) if d is not None]
    return OperatorLineage(inputs=inputs, outputs=[Dataset(namespace=NAMESPACE, name=output_name)])


def deploy_lineage(result: dict[str, Any]) -> Any:
    """Deploy: the model path in, the deployed service out (None without OpenLineage)."""
    if not result:
        return None
    return _lineage(result.get("model_path"), f"services/{result.get('service')}")


def release_lineage(group: str, release: dict[str, Any]) -> Any:
    """Promote: the released model path in, the group out (None without OpenLineage)."""
    if not release:
        return None
    return _lineage(release.get("model_path"), f"groups/{group}")
