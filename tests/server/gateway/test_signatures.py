"""EAS request signatures checked by the real gateway as EAS checks them (issue 12 #6): the Date within
15 minutes, the whole path signed, bodies of any size up to the body limit."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running
from tests.server.gateway.signing import http_date, signed_headers


@pytest.fixture
def echo(eas_server):
    eas_server.client.create(parse_spec(echo_spec("sig_echo")))
    return wait_running(eas_server.client, "sig_echo", 1)


def _post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=60)


@pytest.mark.parametrize("size", [1_000, 15_000, 20_000, 200_000, 1_500_000, 5_000_000])
def test_correctly_signed_bodies_of_any_size_pass(echo, size: int) -> None:
    """Bodies of about 15 KB or more were refused with 401 (HAProxy hashed only its first buffer)."""
    body = b"x" * size
    resp = _post(echo.endpoint, body, signed_headers(echo.token, body, "/api/predict/sig_echo"))
    assert resp.status_code == 200, resp.text[:200]
    assert len(resp.json()["echo"]) == size


def test_the_date_is_required_and_within_fifteen_minutes(echo) -> None:
    body, path = b'{"rows": [1]}', "/api/predict/sig_echo"
    assert _post(echo.endpoint, body, signed_headers(echo.token, body, path, date=http_date(-600))).status_code == 200
    for date in (http_date(-1200), http_date(1200), "Mon, 01 Jan 2001 00:00:00 GMT", "yesterday", ""):
        resp = _post(echo.endpoint, body, signed_headers(echo.token, body, path, date=date))
        assert resp.status_code == 401, f"Date {date!r} replays forever"
        assert "Date header" in resp.json()["message"]
    headers = signed_headers(echo.token, body, path, date="")
    del headers["Date"]
    assert _post(echo.endpoint, body, headers).status_code == 401, "no Date passed"


def test_the_signature_covers_the_whole_path(echo) -> None:
    body = b"{}"
    moved = _post(f"{echo.endpoint}/admin/reset", body, signed_headers(echo.token, body, "/api/predict/sig_echo"))
    assert moved.status_code == 401, "a signed request was moved to another sub-path"
    sub = "/api/predict/sig_echo/v1/predict"
    resp = _post(f"{echo.endpoint}/v1/predict", body, signed_headers(echo.token, body, sub))
    assert resp.status_code == 200
    assert resp.json()["path"] == "/v1/predict"


def test_a_tampered_body_fails_the_signature(echo) -> None:
    body, path = b"a" * 5000, "/api/predict/sig_echo"
    headers = signed_headers(echo.token, body, path)
    assert _post(echo.endpoint, b"b" * 5000, headers).status_code == 401
    assert _post(echo.endpoint, body, {**headers, "Authorization": headers["Authorization"][:-2] + "xx"}
                 ).status_code == 401


def test_model_server_checks_bodies_larger_than_the_gateway_buffers(eas_server, sklearn_model) -> None:
    """Over HAProxy's buffer the gateway checks the signature over the Content-MD5 header; the model server
    checks the body against that header."""
    client = eas_server.client
    client.create(parse_spec({"name": "sig_sk", "processor": "sklearn", "model_path": f"file://{sklearn_model}"}))
    info = wait_running(client, "sig_sk", 1)
    rows = {"instances": [[5.1, 3.5, 1.4, 0.2]] * 60_000}  # about 1.5 MB
    body = json.dumps(rows).encode()
    assert len(body) > 1024 * 1024
    ok = _post(info.endpoint, body, signed_headers(info.token, body, "/api/predict/sig_sk"))
    assert ok.status_code == 200, ok.text[:200]
    assert len(ok.json()["predictions"]) == 60_000
    other = body.replace(b"5.1", b"9.9", 1)
    forged = _post(info.endpoint, other, signed_headers(info.token, body, "/api/predict/sig_sk",
                                                       md5=hashlib.md5(body).hexdigest()))
    assert forged.status_code == 400
    assert "Content-MD5" in forged.json()["error"]


def test_an_image_service_gets_only_the_body_that_was_signed(echo) -> None:
    """Past HAProxy's buffer the signature covers the Content-MD5 header, and nobody checked an image
    service's body against it: a captured request replayed with another body under the same headers was
    served. The gateway now checks such bodies itself."""
    path = "/api/predict/sig_echo/v1/predict"
    body = json.dumps({"rows": "a" * 100_000}).encode()
    headers = signed_headers(echo.token, body, path)
    ok = _post(f"{echo.endpoint}/v1/predict?mode=fast", body, headers)
    assert ok.status_code == 200, ok.text[:200]
    assert ok.json()["echo"] == body.decode(), "the service gets the body as sent"
    assert ok.json()["path"] == "/v1/predict?mode=fast"
    for forged in (body.replace(b"aaaa", b"bbbb", 1), body + b" ", body[:50_000]):
        refused = _post(f"{echo.endpoint}/v1/predict?mode=fast", forged, headers)
        assert refused.status_code == 401, f"a {len(forged)}-byte body replayed under the signed headers"
        assert "Content-MD5" in refused.json()["message"]
    assert _post(f"{echo.endpoint}/v1/predict", body, {"Authorization": echo.token}).status_code == 200
    patch = requests.patch(echo.endpoint, data=body, timeout=60,
                           headers=signed_headers(echo.token, body, "/api/predict/sig_echo", method="PATCH"))
    assert patch.status_code == 405, "HAProxy 2.6's HTTP client has no PATCH: refused, never passed on unchecked"
    assert "GET, HEAD, POST, PUT or DELETE" in patch.json()["message"]
