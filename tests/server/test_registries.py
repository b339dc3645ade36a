"""Registry credentials without an engine: dockerAuth's form, which registry an image pulls from, the store."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_eas.errors import InvalidSpec
from airflow_eas.server.registries import RegistryCredentials, registry_of
from airflow_eas.spec import REDACTED, parse_spec, redact_secrets, restore_secrets
from tests.server.test_cli import _one_line_error, eas

AUTH = base64.b64encode(b"deployer:pa55:word").decode()


def _image_spec(**extra: object) -> dict:
    return {"name": "private", "containers": [{"image": "127.0.0.1:5000/team/app:1", "port": 8000}], **extra}


@pytest.mark.parametrize(("image", "registry"), [
    ("python:3.11", "docker.io"), ("team/app", "docker.io"), ("localhost/app", "localhost"),
    ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000"), ("registry.example.com/a/b@sha256:00", "registry.example.com"),
])
def test_registry_of(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_docker_auth_is_checked_and_never_shown() -> None:
    spec = parse_spec(_image_spec(dockerAuth=AUTH))
    shown = redact_secrets(spec.to_json())
    assert shown["dockerAuth"] == REDACTED
    assert AUTH not in repr(shown)
    assert restore_secrets({**shown}, spec.to_json())["dockerAuth"] == AUTH, "an edit of the shown spec keeps it"
    with pytest.raises(InvalidSpec, match=r"dockerAuth: must be base64 of user:password"):
        parse_spec(_image_spec(dockerAuth="not base64!"))
    with pytest.raises(InvalidSpec, match=r"decoded text has no 'user:' part"):
        parse_spec(_image_spec(dockerAuth=base64.b64encode(b"justauser").decode()))
    with pytest.raises(InvalidSpec, match=r"dockerAuth is for image deployments"):
        parse_spec({"name": "p", "processor": "sklearn", "model_path": "/m", "dockerAuth": AUTH})


def test_store_is_private_and_lists_no_password(tmp_path: Path) -> None:
    creds = RegistryCredentials(tmp_path)
    creds.set("127.0.0.1:5000", "ci", "s3cret-pw")
    assert (tmp_path / "registries.json").stat().st_mode & 0o777 == 0o600
    assert creds.list() == [{"registry": "127.0.0.1:5000", "username": "ci"}]
    spec = parse_spec(_image_spec())
    assert creds.auth_for(spec, "127.0.0.1:5000/team/app:1") == {"username": "ci", "password": "s3cret-pw"}
    assert creds.auth_for(spec, "python:3.11") is None, "another registry: anonymous"
    with_auth = parse_spec(_image_spec(dockerAuth=AUTH))
    assert creds.auth_for(with_auth, "127.0.0.1:5000/team/app:1") == {"username": "deployer", "password": "pa55:word"}
    with pytest.raises(InvalidSpec, match="is not a host"):
        creds.set("https://x/y", "u", "p")


def test_cli_login_list_logout(eas_server, tmp_path: Path) -> None:
    env = {**os.environ, "EAS_ENDPOINT": eas_server.endpoint, "EAS_TOKEN": eas_server.token}
    login = subprocess.run([sys.executable, "-m", "airflow_eas.cli", "registry", "login",
                            "registry.example.com:5000", "-u", "ci", "--password-stdin"],
                           input="s3cret-pw\n", capture_output=True, text=True, env=env, timeout=60)
    assert login.returncode == 0, login.stderr
    assert "s3cret-pw" not in login.stdout, login.stderr
    listed = eas(eas_server, "registry", "list", "--json")
    assert json.loads(listed.stdout) == [{"registry": "registry.example.com:5000", "username": "ci"}]
    assert "s3cret-pw" not in listed.stdout
    _one_line_error(eas(eas_server, "registry", "login", "127.0.0.1:5000", "-u", "ci"), "no password")
    assert eas(eas_server, "registry", "logout", "registry.example.com:5000").returncode == 0
    _one_line_error(eas(eas_server, "registry", "logout", "registry.example.com:5000"), "no login stored")
