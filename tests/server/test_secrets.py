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


def test_secret_env_values_and_url_credentials_never_shown(eas_server) -> None:
    client = eas_server.client
    spec = echo_spec("envsecret", MODEL_NAME="fraud")
    spec["containers"][0]["env"] += [
        {"name": "DB_URL", "value": f"postgres://app:{SECRET}@db/x", "secret": True},
        {"name": "UPSTREAM_API_KEY", "value": SECRET},  # named like a credential: secret without the flag
        {"name": "MIRROR", "value": f"https://bot:{SECRET}@mirror.example/pkgs"},
    ]
    client.create(parse_spec(spec))
    info = client.describe("envsecret")
    shown = {e["name"]: e["value"] for e in info.spec["containers"][0]["env"]}
    assert shown == {"MODEL_NAME": "fraud", "DB_URL": REDACTED, "UPSTREAM_API_KEY": REDACTED,
                     "MIRROR": "https://***@mirror.example/pkgs"}
    assert SECRET not in repr([s.to_dict() for s in client.list()])
    # the instance still gets the real values, and a modify from what desc shows keeps them
    client.modify(parse_spec({**info.spec, "metadata": {"instance": 1, "warm_up_count": 2}}))
    stored = eas_server.client.describe("envsecret")
    assert SECRET not in repr(stored.to_dict())
    from airflow_eas.server.store import Store

    store = Store(eas_server.data_dir / "state.db")
    try:
        env = {e["name"]: e["value"] for e in store.service("envsecret").spec["containers"][0]["env"]}
    finally:
        store.close()
    assert env["DB_URL"] == f"postgres://app:{SECRET}@db/x"
    assert env["UPSTREAM_API_KEY"] == SECRET
    assert env["MIRROR"] == f"https://bot:{SECRET}@mirror.example/pkgs"
