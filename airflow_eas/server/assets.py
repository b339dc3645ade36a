"""Assets (EAS's AI Computing Asset Management): named images and warm-up data sets.

An asset maps a name to an image reference (``type: image``) or a data URI (``type: data``),
with a description and a version. Specs refer to one as ``"image": "asset:NAME"`` or
``"warm_up_data_path": "asset:NAME"``; the reference stays in the stored spec and is
resolved each time an instance is launched, so re-pointing an asset reaches the next
rollout or restart without editing every spec. An asset that a service refers to cannot be
deleted: the refusal (409) names the services.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airflow_eas.asset_refs import PREFIX, references, resolve_value
from airflow_eas.errors import Conflict, InvalidSpec
from airflow_eas.server.store import Store
from airflow_eas.spec import NAME_PATTERN, NAME_RULE, ServiceSpec, redact_url


class Asset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["image", "data"]
    uri: str = Field(min_length=1, description="an image reference, or a data URI (file://, oss://, http(s)://)")
    description: str = ""
    version: str = Field(default="v1", min_length=1, max_length=64)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid asset name ({NAME_RULE})")
        return value

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if value.startswith(PREFIX):
            raise ValueError("an asset cannot point at another asset")
        if re.search(r"\s", value):
            raise ValueError("must not contain whitespace")
        return value


def parse_asset(body: Any) -> Asset:
    try:
        asset = Asset.model_validate(body)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (an asset has name, type, uri, description, version)"
            parts.append(f"{'.'.join(str(p) for p in err['loc']) or 'asset'}: {msg}")
        raise InvalidSpec(f"invalid asset: {'; '.join(parts)}") from None
    if asset.type == "data" and not re.match(r"^(file|oss|https?)://|^/", asset.uri):
        raise InvalidSpec(f"invalid asset: uri: {asset.uri!r} is not a data URI (file://, oss://, http(s)://, /path)")
    return asset


def resolve(store: Store, spec: ServiceSpec) -> ServiceSpec:
    """The spec with every ``asset:NAME`` replaced by what the asset points at now."""
    refs = references(spec.model_dump(mode="json", exclude_none=True))
    if not refs:
        return spec
    values = {field: resolve_value(field, f"{PREFIX}{name}", store.asset) for field, name in refs.items()}
    update: dict[str, Any] = {}
    if "image" in values:
        update["containers"] = [spec.containers[0].model_copy(update={"image": values["image"]})]  # type: ignore[index]
    if "warm_up_data_path" in values:
        update["warm_up_data_path"] = values["warm_up_data_path"]
    return spec.model_copy(update=update)


class Assets:
    """What the API does with assets, over the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, body: Any) -> dict[str, Any]:
        asset = parse_asset(body)
        with self.store.lock:
            if any(a["name"] == asset.name for a in self.store.assets()):
                raise Conflict(f"asset {asset.name!r} exists: update it with PUT (eas asset create --update)")
            self.store.put_asset(asset.name, asset.type, asset.uri, asset.description, asset.version)
        return self.describe(asset.name)

    def update(self, name: str, body: Any) -> dict[str, Any]:
        asset = parse_asset({**body, "name": name} if isinstance(body, dict) else body)
        with self.store.lock:
            users = self.users(name)
            old = next((a for a in self.store.assets() if a["name"] == name), None)
            if old is not None and old["type"] != asset.type and users:
                raise Conflict(f"asset {name!r} is used as {old['type']} by {', '.join(users)}: keep its type")
            self.store.put_asset(asset.name, asset.type, asset.uri, asset.description, asset.version)
        return self.describe(name)

    def list(self) -> list[dict[str, Any]]:
        return [self._view(a) for a in self.store.assets()]

    def describe(self, name: str) -> dict[str, Any]:
        return self._view(self.store.asset(name))

    def delete(self, name: str) -> None:
        with self.store.lock:
            self.store.asset(name)
            users = self.users(name)
            if users:
                raise Conflict(f"asset {name!r} is in use by service(s) {', '.join(users)}: "
                               "change or delete them first")
            self.store.delete_asset(name)

    def users(self, name: str) -> list[str]:
        return sorted(s.name for s in self.store.services() if name in references(s.spec).values())

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**{k: row[k] for k in ("name", "type", "description", "version", "created", "updated")},
                "uri": redact_url(row["uri"]),  # an oss:// or https:// URI may carry its user and key
                "used_by": self.users(row["name"])}
