"""The control plane's front door: the token and the body size are checked before a body is read."""

from __future__ import annotations

import json
import socket
import time

import requests

from tests.conftest import echo_spec


def _raw(port: int, head: str, body: bytes = b"", read_timeout: float = 5.0) -> tuple[int, dict, float]:
    """Send a request head (and maybe part of a body) and read the answer without sending the rest."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    took = time.monotonic() - started
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}"), took


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_an_unauthenticated_100_mb_post_is_refused_before_its_body_is_read(eas_server) -> None:
    head = (f"POST /api/v2/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n")
    status, body, took = _raw(eas_server.api_port, head, b"{" * 1024)
    assert status == 401, body
    assert body["code"] == "Unauthorized", body
    assert took < 2, f"answered after {took:.1f} s: the body was waited for"


def test_bad_json_without_a_token_is_401_not_400(eas_server) -> None:
    r = requests.post(f"{eas_server.endpoint}/api/v2/services", data=b"{not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text


def test_a_spec_over_the_limit_is_413(eas_server) -> None:
    auth = {"Authorization": f"Bearer {eas_server.token}", "Content-Type": "application/json"}
    spec = echo_spec("huge", BIG="x" * (2 * 1024 * 1024))
    r = requests.post(f"{eas_server.endpoint}/api/v2/services", data=json.dumps(spec), headers=auth, timeout=30)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "PayloadTooLarge", r.text

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(64):
            yield b" " * 65536

    r = requests.post(f"{eas_server.endpoint}/api/v2/services", data=chunks(), headers=auth, timeout=30)
    assert r.status_code == 413, r.text
    assert "huge" not in [s.name for s in eas_server.client.list()]


def test_bodies_get_the_answers_the_openapi_document_lists(eas_server) -> None:
    auth = {"Authorization": f"Bearer {eas_server.token}"}
    doc = requests.get(f"{eas_server.endpoint}/openapi.json", timeout=10).json()
    create = doc["paths"]["/api/v2/services"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413"} <= set(create), sorted(create)
    scale = doc["paths"]["/api/v2/services/{name}/scale"]["post"]["requestBody"]["content"]["application/json"]
    required = doc["components"]["schemas"][scale["schema"]["$ref"].rsplit("/", 1)[1]]["required"]
    assert required == ["instances"], "the schema says what {} lacks"
    r = requests.post(f"{eas_server.endpoint}/api/v2/services/nosuch/scale", json={}, headers=auth, timeout=10)
    assert r.status_code == 400, r.text
    assert "instances" in r.json()["message"], r.text
    r = requests.post(f"{eas_server.endpoint}/api/v2/services/nosuch/scale", json={"instances": 1}, headers=auth,
                      timeout=10)
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "NotFound", r.text
    body = doc["paths"]["/api/v2/services"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "object", "a spec is an object: null is not allowed by the schema either"
    r = requests.post(f"{eas_server.endpoint}/api/v2/services", data="null", timeout=10,
                      headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    r = requests.post(f"{eas_server.endpoint}/api/v2/groups/g/lease", json={"holder": "me"}, headers=auth, timeout=10)
    assert r.status_code == 200, "ttl_seconds has a default, as the schema says"
    requests.delete(f"{eas_server.endpoint}/api/v2/groups/g/lease", params={"holder": "me"}, headers=auth, timeout=10)
