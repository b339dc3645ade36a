"""Registry credentials: the server-side store (one login per registry) and the auth of one pull.

A pull of ``containers[0].image`` authenticates with the spec's ``dockerAuth`` (EAS: base64
``user:password``) where it has one, else with the login stored for the image's registry
(``eas registry login``). The store is ``DATA_DIR/registries.json``, mode 0600, written
whole by rename so a crash never leaves half a file. Passwords leave this module only as a
pull's ``auth_config``: listings show the registry and the user name.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from airflow_eas.errors import InvalidSpec, NotFound
from airflow_eas.spec import ServiceSpec, docker_auth_pair

DOCKER_HUB = "docker.io"
# a host, optionally with a port: what the first part of an image reference must look like to be a registry
_REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:\d{1,5})?$")


def registry_of(image: str) -> str:
    """The registry an image reference pulls from, by Docker's rule: the first path part is a registry
    when it has a dot or a port or is ``localhost``; otherwise the image is on Docker Hub."""
    first, sep, _ = image.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first):
        return first
    return DOCKER_HUB


def check_registry(registry: str) -> str:
    if not _REGISTRY.match(registry):
        raise InvalidSpec(f"registry {registry!r} is not a host[:port], e.g. registry.example.com or 127.0.0.1:5000")
    return registry


class RegistryCredentials:
    """Logins per registry, kept in the data dir (0600)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "registries.json"
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, logins: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(logins, out)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def set(self, registry: str, username: str, password: str) -> dict:
        check_registry(registry)
        if not username or ":" in username:
            raise InvalidSpec("username: give a user name without ':'")
        if not password:
            raise InvalidSpec("password: must not be empty")
        with self._lock:
            logins = self._read()
            logins[registry] = {"username": username, "password": password}
            self._write(logins)
        return {"registry": registry, "username": username}

    def remove(self, registry: str) -> None:
        with self._lock:
            logins = self._read()
            if logins.pop(registry, None) is None:
                raise NotFound(f"no login stored for registry {registry!r}")
            self._write(logins)

    def list(self) -> list[dict]:
        return [{"registry": r, "username": v["username"]} for r, v in sorted(self._read().items())]

    def auth_for(self, spec: ServiceSpec, image: str) -> dict[str, str] | None:
        """The ``auth_config`` of pulling ``image`` for ``spec``; None pulls anonymously."""
        if spec.dockerAuth and spec.containers and spec.containers[0].image == image:
            user, password = docker_auth_pair(spec.dockerAuth)
            return {"username": user, "password": password}
        login = self._read().get(registry_of(image))
        return dict(login) if login else None
