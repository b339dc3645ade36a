"""airflow_eas.hooks and the provider info: the connection."""

from __future__ import annotations

import importlib
import json

import pytest

from airflow_eas.errors import EasError

# -- hook and provider info ----------------------------------------------------------------------


def test_hook_builds_the_platform_from_the_connection(monkeypatch) -> None:
    from airflow_eas.hooks.eas import EasHook
    from airflow_eas.platform.async_client import AsyncEasClient
    from airflow_eas.platform.client import EasClient

    monkeypatch.setenv(
        "AIRFLOW_CONN_EAS_X",
        json.dumps({"conn_type": "eas", "host": "10.0.0.5", "port": 8600, "password": "tok"}),
    )
    platform = EasHook("eas_x").get_platform()
    assert isinstance(platform, EasClient)
    assert platform.endpoint == "http://10.0.0.5:8600"
    assert platform.token == "tok"
    triggers_platform = EasHook("eas_x").get_async_platform()  # what a trigger awaits: httpx, no thread
    assert isinstance(triggers_platform, AsyncEasClient)
    assert triggers_platform.endpoint == "http://10.0.0.5:8600"
    monkeypatch.setenv("AIRFLOW_CONN_EAS_HTTP", json.dumps({"conn_type": "http", "host": "10.0.0.5"}))
    for get in (EasHook.get_platform, EasHook.get_async_platform):
        with pytest.raises(EasError, match="connection 'eas_http' has type 'http'; EasHook needs 'eas' or"):
            get(EasHook("eas_http"))
    monkeypatch.setenv("AIRFLOW_CONN_EAS_K8S", json.dumps({"conn_type": "kubernetes", "extra": {"gatway_name": "x"}}))
    with pytest.raises(EasError, match="unknown extra.s. gatway_name"):
        EasHook("eas_k8s").get_platform()
    monkeypatch.setenv(
        "AIRFLOW_CONN_EAS_DOWN",
        json.dumps({"conn_type": "eas", "host": "127.0.0.1", "port": 9, "password": "x"}),
    )
    ok, message = EasHook("eas_down", timeout=1).test_connection()
    assert not ok
    assert "cannot reach" in message


def test_provider_info_declares_the_connection_type() -> None:
    from airflow_eas.get_provider_info import get_provider_info

    info = get_provider_info()
    [conn] = info["connection-types"]
    assert conn["connection-type"] == "eas"
    assert conn["hook-class-name"] == "airflow_eas.hooks.eas.EasHook"
    for path in info["extra-links"] + [conn["hook-class-name"]]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)
