"""Credentials in a spec never come back out: not in `desc`, not in events, not in failure reasons."""

from __future__ import annotations

from airflow_eas.spec import REDACTED, parse_spec, redact_secrets, restore_secrets
from tests.conftest import echo_spec, wait_until

SECRET = "s3cr3t-Pa55word"


def _with_git(name: str, password: str) -> dict:
    spec = echo_spec(name)
    spec["storage"] = [{"mount_path": "/code", "git": {"repo": "http://127.0.0.1:9/nowhere.git",
                                                      "username": "bot", "password": password}}]
    return spec


def test_redact_and_restore_round_trip() -> None:
    stored = _with_git("x", SECRET)
    shown = redact_secrets(stored)
    assert shown["storage"][0]["git"]["password"] == REDACTED
    assert stored["storage"][0]["git"]["password"] == SECRET, "the stored spec is untouched"
    edited = {**shown, "metadata": {"instance": 2}}
    assert restore_secrets(edited, stored)["storage"][0]["git"]["password"] == SECRET
    changed = redact_secrets(stored)
    changed["storage"][0]["git"]["password"] = "new-one"
    assert restore_secrets(changed, stored)["storage"][0]["git"]["password"] == "new-one"


def test_git_password_never_shown(eas_server) -> None:
    client = eas_server.client
    client.create(parse_spec(_with_git("secretive", SECRET)))
    info = wait_until(lambda: (i := client.describe("secretive")).status == "Failed" and i, 60, "Failed")
    assert info.spec["storage"][0]["git"]["password"] == REDACTED
    shown = repr(info.to_dict()) + client.logs("secretive")
    assert SECRET not in shown
    # a modify built from what `desc` shows keeps the real password
    client.modify(parse_spec({**info.spec, "metadata": {"instance": 1, "warm_up_count": 2}}))
    info = client.describe("secretive")
    assert info.spec["storage"][0]["git"]["password"] == REDACTED
    assert SECRET not in repr(info.to_dict())
