"""The deploy form as a service spec, and validation errors put back at their fields.

The form is a convenience over the spec JSON, never a second validator: it only builds a
dict, and whatever :func:`~airflow_eas.spec.parse_spec` says about it is shown at the
input the failing path came from.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_eas.errors import EasError

PREFIX = "invalid service spec: "

# spec path (its leading parts) -> deploy form input
FIELD_OF_PATH = {
    "name": "name",
    "processor": "processor",
    "model_path": "model_path",
    "containers.0.image": "image",
    "containers.0.command": "command",
    "containers.0.port": "port",
    "containers.0.env": "env",
    "containers": "image",
    "metadata.instance": "instances",
    "metadata.group": "group",
    "metadata": "instances",
}

MENTIONED = ("model_path", "processor", "image", "command", "port")


def field_errors(exc: EasError) -> list[tuple[str, str]]:
    """``(path, message)`` of every problem an error names; the path is ``spec`` when it names none."""
    text = exc.message.removeprefix(PREFIX)
    out = []
    for part in re.split(r"; (?=[\w.]+: )", text):  # a message may hold "; " itself
        path, sep, message = part.partition(": ")
        if sep and " " not in path:
            out.append((path, message))
        else:
            out.append(("spec", part))
    return out


def errors_by_input(exc: EasError) -> dict[str, list[str]]:
    """The deploy form's inputs -> their messages (``_`` holds what fits no input)."""
    out: dict[str, list[str]] = {}
    for path, message in field_errors(exc):
        target = "_"
        for prefix, name in FIELD_OF_PATH.items():
            if path == prefix or path.startswith(prefix + "."):
                target = name
                break
        else:  # a rule over several fields ("processor 'x' needs model_path"): the field it names
            target = next((name for name in MENTIONED if name in message), "_")
        out.setdefault(target, []).append(message if target != "_" else f"{path}: {message}")
    return out


def spec_from_form(form: dict[str, str]) -> dict[str, Any]:
    """A spec dict from the deploy form: by processor (processor + model path) or by image."""
    metadata: dict[str, Any] = {"instance": int_or_text(form.get("instances", "1"))}
    if form.get("group", "").strip():
        metadata["group"] = form["group"].strip()
    spec: dict[str, Any] = {"name": form.get("name", "").strip(), "metadata": metadata}
    if form.get("kind", "processor") == "image":
        container: dict[str, Any] = {"image": form.get("image", "").strip(),
                                     "port": int_or_text(form.get("port", "").strip())}
        if form.get("command", "").strip():
            container["command"] = form["command"].strip()
        env = []
        for line in form.get("env", "").splitlines():
            if line.strip():
                key, _, value = line.partition("=")
                env.append({"name": key.strip(), "value": value})
        if env:
            container["env"] = env
        spec["containers"] = [container]
    else:
        spec["processor"] = form.get("processor", "").strip()
        spec["model_path"] = form.get("model_path", "").strip() or None
    return spec


def int_or_text(value: str) -> int | str:
    """A number where it is one; the text otherwise, for the validator to name at its field."""
    try:
        return int(value)
    except ValueError:
        return value
