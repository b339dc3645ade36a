"""The EAS service spec: pydantic models with EAS's own field names.

Validated once, at the edge (CLI, REST API, operators); everything behind it can
trust a :class:`ServiceSpec`. Errors name the field path and what is allowed.
This module imports nothing else from the package but :mod:`airflow_eas.errors`.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_eas.errors import InvalidSpec

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
NAME_RULE = "start with a lowercase letter; lowercase letters, digits and underscores; at most 64 characters"
RESERVED_PORTS = frozenset({8080, 9090})
BUILTIN_PROCESSORS = ("sklearn", "xgboost", "lightgbm", "onnx", "pmml")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-.=+/]{8,128}$")


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise InvalidSpec(f"{what}: {value!r} is not a valid name ({NAME_RULE})")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RpcConfig(_Strict):
    """EAS ``metadata.rpc``: request handling inside each instance."""

    keepalive: int = Field(default=60000, ge=1, description="request timeout in ms (408 past it)")
    batching: bool = False
    max_batch_size: int = Field(default=16, ge=1, le=4096)
    max_batch_timeout: int = Field(default=10, ge=0, le=60000, description="ms to wait to fill a batch")
    max_queue_size: int = Field(default=1024, ge=1, description="queued requests before 450")
    rate_limit: int = Field(default=0, ge=0, description="requests per second per instance, 0 = none")
    worker_threads: int = Field(default=4, ge=1, le=256)


class RollingStrategy(_Strict):
    max_surge: int = Field(default=1, ge=0)
    max_unavailable: int = Field(default=0, ge=0)


class Metadata(_Strict):
    instance: int = Field(default=1, ge=0, le=64)
    cpu: float | None = Field(default=None, gt=0)
    memory: int | None = Field(default=None, gt=0, description="MiB")
    gpu: int | None = Field(default=None, ge=0)
    group: str | None = None
    rpc: RpcConfig = Field(default_factory=RpcConfig)
    rolling_strategy: RollingStrategy = Field(default_factory=RollingStrategy)
    warm_up_count: int = Field(default=1, ge=0, le=1000, description="times each warm-up request is replayed")

    @field_validator("group")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid group name ({NAME_RULE})")
        return value


class EnvVar(_Strict):
    """One environment variable; ``secret: true`` keeps its value out of every answer and view."""

    name: str = Field(min_length=1)
    value: str = ""
    secret: bool = False

    @field_validator("name")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"{value!r} is not a valid environment variable name")
        return value


class Container(_Strict):
    image: str = Field(min_length=1)
    command: str | None = None
    script: str | None = None
    port: int = Field(default=8000, ge=1, le=65535)
    env: list[EnvVar] = Field(default_factory=list)

    @field_validator("port")
    @classmethod
    def _not_reserved(cls, value: int) -> int:
        if value in RESERVED_PORTS:
            raise ValueError(f"port {value} is reserved by EAS (8080 and 9090); choose another")
        return value

    @model_validator(mode="after")
    def _one_entrypoint(self) -> Container:
        if self.command and self.script:
            raise ValueError("give either command or script, not both")
        return self


class OssMount(_Strict):
    path: str
    endpoint: str | None = None
    readOnly: bool = True

    @field_validator("path")
    @classmethod
    def _oss_uri(cls, value: str) -> str:
        if not value.startswith("oss://") or len(value) <= len("oss://"):
            raise ValueError("must be an oss://bucket/prefix URI")
        return value


class NfsMount(_Strict):
    server: str = Field(min_length=1)
    path: str = "/"
    readOnly: bool = False


class GitMount(_Strict):
    repo: str = Field(min_length=1)
    branch: str | None = None
    commit: str | None = None
    username: str | None = None
    password: str | None = None


class LocalMount(_Strict):
    path: str
    readOnly: bool = False

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return _absolute_path(value)


class StorageMount(_Strict):
    mount_path: str
    oss: OssMount | None = None
    nfs: NfsMount | None = None
    git: GitMount | None = None
    local: LocalMount | None = None

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return _absolute_path(value)

    @model_validator(mode="after")
    def _one_kind(self) -> StorageMount:
        kinds = [k for k in ("oss", "nfs", "git", "local") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of oss, nfs, git, local (got {kinds or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("oss", "nfs", "git", "local") if getattr(self, k) is not None)


class CloudInstance(_Strict):
    """One instance type, in order of preference; ``spot_price_limit`` asks for a spot instance."""

    type: str = Field(min_length=1, max_length=63)
    spot_price_limit: float | None = Field(default=None, gt=0)


class CloudComputing(_Strict):
    instances: list[CloudInstance] = Field(default_factory=list)


class Cloud(_Strict):
    """EAS ``cloud``: where instances run. The single host ignores it; a cluster turns it into node affinity."""

    computing: CloudComputing = Field(default_factory=CloudComputing)

    @property
    def instance_types(self) -> list[str]:
        return [i.type for i in self.computing.instances]


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    if ".." in value.split("/"):
        raise ValueError(f"{value!r} must not contain '..'")
    return posixpath.normpath(value)


class ServiceSpec(_Strict):
    """An EAS service: deployed by processor (built-in or custom Python) or by image."""

    name: str
    model_path: str | None = None
    processor: str | None = None
    processor_path: str | None = None
    processor_entry: str | None = None
    processor_mainclass: str | None = None
    processor_type: Literal["python"] | None = None
    containers: list[Container] | None = None
    metadata: Metadata = Field(default_factory=Metadata)
    warm_up_data_path: str | None = None
    storage: list[StorageMount] = Field(default_factory=list)
    token: str | None = None
    cloud: Cloud | None = None
    dockerAuth: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid service name ({NAME_RULE})")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not TOKEN_PATTERN.match(value):
            raise ValueError("must be 8-128 characters of letters, digits and _-.=+/")
        return value

    @field_validator("dockerAuth")
    @classmethod
    def _docker_auth(cls, value: str | None) -> str | None:
        if value is not None and value != REDACTED:
            docker_auth_pair(value)
        return value

    @field_validator("processor")
    @classmethod
    def _builtin(cls, value: str | None) -> str | None:
        if value is not None and value not in BUILTIN_PROCESSORS:
            raise ValueError(f"{value!r} is not a built-in processor; choose one of {', '.join(BUILTIN_PROCESSORS)}")
        return value

    @field_validator("containers")
    @classmethod
    def _one_container(cls, value: list[Container] | None) -> list[Container] | None:
        if value is not None and len(value) != 1:
            raise ValueError("give exactly one container (sidecars are not supported)")
        return value

    @model_validator(mode="after")
    def _one_deployment_kind(self) -> ServiceSpec:
        kinds = []
        if self.processor:
            kinds.append("processor")
        if self.processor_path or self.processor_entry or self.processor_mainclass or self.processor_type:
            kinds.append("processor_path")
        if self.containers:
            kinds.append("containers")
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of processor (built-in), processor_path (custom Python processor) "
                f"or containers (image); got {', '.join(kinds) or 'none'}"
            )
        if "processor_path" in kinds:
            missing = [f for f in ("processor_path", "processor_entry", "processor_mainclass") if not getattr(self, f)]
            if missing:
                raise ValueError(f"a custom processor needs {', '.join(missing)}")
        if self.dockerAuth and not self.containers:
            raise ValueError("dockerAuth is for image deployments (containers[].image): nothing here is pulled")
        if self.processor and not self.model_path:
            raise ValueError(f"processor {self.processor!r} needs model_path")
        mounts = [m.mount_path for m in self.storage]
        if len(mounts) != len(set(mounts)):
            raise ValueError("storage: two entries share one mount_path")
        return self

    @property
    def kind(self) -> Literal["processor", "custom", "image"]:
        if self.containers:
            return "image"
        return "processor" if self.processor else "custom"

    @property
    def group(self) -> str | None:
        return self.metadata.group

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not part of the EAS service spec)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{path}: {msg}")
    return "; ".join(lines)


def spec_dict(data: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """A spec as a dict, from a dict or JSON text, before validation."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"spec is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSpec("spec must be a JSON object")
    return data


def parse_spec(data: dict[str, Any] | str | bytes) -> ServiceSpec:
    """Validate an EAS service spec (dict or JSON text); raise InvalidSpec naming each bad field."""
    data = spec_dict(data)
    try:
        spec = ServiceSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(f"invalid service spec: {format_errors(exc)}") from None
    _check_commands(spec)
    return spec


def _check_commands(spec: ServiceSpec) -> None:
    """The process runtime splits ``command`` as a shell would: what it could not run is refused when the
    spec is accepted. Checked here, at the edge, not in the model: a spec an older server stored must still
    load (and fail alone when launched)."""
    for i, container in enumerate(spec.containers or []):
        if container.command is None:
            continue
        try:
            argv = shlex.split(container.command)
        except ValueError as exc:
            raise InvalidSpec(f"invalid service spec: containers.{i}.command: {container.command!r} cannot be split "
                              f"into arguments ({exc}); check its quotes") from None
        if not argv:
            raise InvalidSpec(f"invalid service spec: containers.{i}.command: must name a program to run")


def load_spec_file(path: str | Path) -> ServiceSpec:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidSpec(f"cannot read spec file {path}: {exc.strerror}") from None
    return parse_spec(text)


def apply_overrides(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply EASCMD-style ``-D key.path=value`` edits to a spec dict (values parsed as JSON when they can be)."""
    out = json.loads(json.dumps(data))
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidSpec(f"-D {item!r}: expected key=value, e.g. metadata.instance=2")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise InvalidSpec(f"-D {key}: {part} is not an object")
            node = child
        node[parts[-1]] = value
    return out


REDACTED = "******"
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
REDACTED_USERINFO = "***@"  # what a URL's user-info reads once redacted
# Env names that hold secrets whatever ``secret`` says (EAS users put keys in env without marking them)
_SECRET_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|API_KEY|CREDENTIAL)")


def env_is_secret(env: dict[str, Any]) -> bool:
    """An env entry whose value is never shown: marked ``secret: true`` or named like a credential."""
    return bool(env.get("secret")) or bool(_SECRET_NAME.search(str(env.get("name", ""))))


def redact_url(text: str) -> str:
    """``text`` with the user-info of every URL in it (``https://user:pw@host``) replaced."""
    return _URL_USERINFO.sub(r"\1" + REDACTED_USERINFO, text)


def _secret_slots(spec: dict[str, Any]) -> dict[tuple[str, ...], str]:
    """Every secret value of a spec by a stable key: the registry login (dockerAuth), git passwords by mount
    path, env values by name, URLs with credentials by where they are."""
    slots: dict[tuple[str, ...], str] = {}
    if isinstance(spec.get("dockerAuth"), str) and spec["dockerAuth"]:
        slots[("dockerAuth",)] = spec["dockerAuth"]
    for mount in spec.get("storage") or []:
        git = mount.get("git") if isinstance(mount, dict) else None
        if isinstance(git, dict):
            where = str(mount.get("mount_path"))
            if git.get("password"):
                slots[("git.password", where)] = git["password"]
            if isinstance(git.get("repo"), str) and redact_url(git["repo"]) != git["repo"]:
                slots[("git.repo", where)] = git["repo"]
    for c, container in enumerate(spec.get("containers") or []):
        for env in (container.get("env") or []) if isinstance(container, dict) else []:
            if isinstance(env, dict) and isinstance(env.get("value"), str) and env["value"]:
                if env_is_secret(env) or redact_url(env["value"]) != env["value"]:
                    slots[("env", str(c), str(env.get("name")))] = env["value"]
    return slots


def _slot_refs(spec: dict[str, Any]) -> list[tuple[tuple[str, ...], dict[str, Any], str]]:
    """(key, the dict holding the value, its field) of every secret slot of ``spec``."""
    refs: list[tuple[tuple[str, ...], dict[str, Any], str]] = [(("dockerAuth",), spec, "dockerAuth")]
    for mount in spec.get("storage") or []:
        git = mount.get("git") if isinstance(mount, dict) else None
        if isinstance(git, dict):
            where = str(mount.get("mount_path"))
            refs += [(("git.password", where), git, "password"), (("git.repo", where), git, "repo")]
    for c, container in enumerate(spec.get("containers") or []):
        for env in (container.get("env") or []) if isinstance(container, dict) else []:
            if isinstance(env, dict):
                refs.append((("env", str(c), str(env.get("name"))), env, "value"))
    return refs


def docker_auth_pair(value: str) -> tuple[str, str]:
    """EAS's ``dockerAuth``: base64 of ``user:password``, as (user, password)."""
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("must be base64 of user:password (e.g. `printf user:pass | base64`)") from None
    if not sep or not user:
        raise ValueError("must be base64 of user:password: the decoded text has no 'user:' part")
    return user, password


def redact_secrets(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as it may be shown: git passwords, dockerAuth, secret env values and URL credentials replaced."""
    out = json.loads(json.dumps(spec))
    slots = _secret_slots(out)
    for key, holder, field in _slot_refs(out):
        if key in slots:
            whole = field in ("password", "dockerAuth") or (field == "value" and env_is_secret(holder))
            holder[field] = REDACTED if whole else redact_url(holder[field])
    return out


def restore_secrets(new: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Put back the secrets a user's edit of a shown (redacted) spec left redacted, by where they are."""
    kept = _secret_slots(stored)
    shown = redact_secrets(stored)
    shown_values = {key: holder.get(field) for key, holder, field in _slot_refs(shown)}
    for key, holder, field in _slot_refs(new):
        if key in kept and holder.get(field) == shown_values.get(key):
            holder[field] = kept[key]
    if new.get("dockerAuth") == REDACTED and not stored.get("dockerAuth"):
        new.pop("dockerAuth")  # a shown placeholder with nothing behind it: no credentials
    return new
