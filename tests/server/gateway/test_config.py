"""The HAProxy config a gateway state renders to, checked by HAProxy itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_eas.server.gateway import DRAIN, MAINT, READY, Backend, GatewayConfig, GatewayState, Server
from airflow_eas.server.gateway.config import read_map


def _state() -> GatewayState:
    state = GatewayState()
    state.backends["s_web"] = Backend("s_web", None, [Server("web-1", "127.0.0.1:9001")], strip_prefix=True)
    state.backends["g_fraud"] = Backend("g_fraud", "/ready", [
        Server("blue.a1", "127.0.0.1:9002", 200, READY),
        Server("blue.b2", "127.0.0.1:9003", 200, DRAIN),
        Server("green.c3", "127.0.0.1:9004", 56, MAINT),
    ])
    state.routes = {"web": ("s_web", "tok-web"), "fraud": ("g_fraud", "tok-fraud")}
    return state


def _backend_block(text: str, name: str) -> list[str]:
    lines = [*text.splitlines(), ""]  # the last block ends the text
    start = lines.index(f"backend {name}")
    return lines[start:lines.index("", start)]


def test_servers_render_with_their_weight_and_admin_state(tmp_path: Path) -> None:
    text = GatewayConfig(tmp_path, "127.0.0.1", 8080, 5140).render(_state())
    fraud = _backend_block(text, "g_fraud")
    assert "    option httpchk GET /ready" in fraud
    assert "    server blue.a1 127.0.0.1:9002 weight 200" in fraud
    assert "    server blue.b2 127.0.0.1:9003 weight 0" in fraud, "a draining server gets no new requests"
    assert "    server green.c3 127.0.0.1:9004 weight 56 disabled" in fraud
    assert "    retry-on conn-failure empty-response" in fraud, "a request its instance dropped goes to another"
    web = _backend_block(text, "s_web")
    assert "    retry-on conn-failure" in web, "one instance: nowhere else to resend to, so no copy of each request"
    assert not any("httpchk" in line for line in web), "image services are checked by TCP connect"
    assert any("set-path" in line for line in web), "image services get the path below the prefix"


def test_request_log_can_be_switched_off(tmp_path: Path) -> None:
    on = GatewayConfig(tmp_path, "127.0.0.1", 8080, 5140).render(GatewayState())
    off = GatewayConfig(tmp_path, "127.0.0.1", 8080, 5140, request_log=False).render(GatewayState())
    assert "    log 127.0.0.1:5140 len 512 format raw local0 info" in on.splitlines()
    assert "127.0.0.1:5140" not in off


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_written_config_and_maps_are_valid_for_haproxy(tmp_path: Path) -> None:
    config = GatewayConfig(tmp_path, "127.0.0.1", 8080, 5140)
    config.write(_state(), {"fraud": 250})
    res = subprocess.run(["haproxy", "-c", "-q", "-f", str(config.cfg)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # keyed by the path prefix of the route: one fetch of the path finds it
    assert (tmp_path / "tokens.map").read_text() == "/api/predict/fraud tok-fraud\n/api/predict/web tok-web\n"
    assert (tmp_path / "backends.map").read_text() == "/api/predict/fraud g_fraud\n/api/predict/web s_web\n"
    assert (tmp_path / "sample.map").read_text() == "/api/predict/fraud 250\n"
    assert read_map(tmp_path / "sample.map") == {"fraud": 250}
    assert oct((tmp_path / "tokens.map").stat().st_mode & 0o777) == "0o600", "tokens are secrets"


def test_body_limit_and_log_secret_follow_the_settings(tmp_path: Path) -> None:
    text = GatewayConfig(tmp_path, "127.0.0.1", 8080, 5140, max_body=5 * 1024 * 1024, log_secret="f00d").render(
        GatewayState())
    assert "if { req.body_size gt 5242880 }" in text
    assert "limit of 5 MB (eas server --max-body-mb)" in text
    assert '    log-format "f00d %b %s %ST %Ta %[var(txn.eas_keep)]"' in text.splitlines()
