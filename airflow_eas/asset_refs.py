"""``asset:NAME`` references in a spec, and their resolution: shared by ``eas server`` (at each launch,
server/assets.py) and the provider (the warm-up it sends itself, rollout.py), which only differ in where
an asset is looked up (the server's store, the platform's API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_eas.errors import DeployFailed, NotFound

PREFIX = "asset:"
# where a spec may name an asset, and the asset type each place takes
FIELD_TYPES = {"image": "image", "warm_up_data_path": "data"}

# an asset's record by name ({"type": ..., "uri": ...}); raises NotFound
Lookup = Callable[[str], dict[str, Any]]


def asset_name(value: object) -> str | None:
    """``NAME`` of an ``asset:NAME`` value, else None."""
    return value[len(PREFIX):] if isinstance(value, str) and value.startswith(PREFIX) else None


def references(spec: dict[str, Any]) -> dict[str, str]:
    """The asset names a spec (as a JSON dict) refers to, by field."""
    containers = spec.get("containers") or []
    image = containers[0].get("image") if containers and isinstance(containers[0], dict) else None
    found = {}
    for field, value in (("image", image), ("warm_up_data_path", spec.get("warm_up_data_path"))):
        name = asset_name(value)
        if name is not None:
            found[field] = name
    return found


def resolve_value(field: str, value: str, lookup: Lookup) -> str:
    """``value`` of ``field`` with an ``asset:NAME`` replaced by the asset's URI (checked for its type)."""
    name = asset_name(value)
    if name is None:
        return value
    try:
        row = lookup(name)
    except NotFound:
        raise DeployFailed(f"{field}: asset {name!r} is not registered (eas asset list)") from None
    if row["type"] != FIELD_TYPES[field]:
        raise DeployFailed(f"{field}: asset {name!r} is of type {row['type']}, not {FIELD_TYPES[field]}")
    return row["uri"]
