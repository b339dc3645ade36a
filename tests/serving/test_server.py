"""The model server's HTTP edge under large bodies (issue 12 #3): readiness answers while a large
body is parsed, bodies over the limit are refused before they are held, RSS stays bounded."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

from airflow_eas.server.gateway.config import CHECK_TIMEOUT_S

from ._helpers import request

ROW = [5.1, 3.5, 1.4, 0.2]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _post_async(port: int, body: bytes, out: dict) -> threading.Thread:
    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            out["status"], out["body"] = resp.status, resp.read()
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_readiness_answers_while_a_large_body_is_parsed(serve, sklearn_model) -> None:
    s = serve({"name": "big_sk", "processor": "sklearn", "model_path": str(sklearn_model)})
    body = json.dumps({"instances": [ROW] * 200_000}).encode()  # 4 MB of rows
    out: dict = {}
    sender = _post_async(s.port, body, out)
    slowest = 0.0
    while sender.is_alive():
        t0 = time.monotonic()
        status, _ = request(s.port, "GET", "/ready", timeout=10)
        slowest = max(slowest, time.monotonic() - t0)
        assert status == 200
        time.sleep(0.05)
    assert out["status"] == 200, out.get("body", b"")[:200]
    assert len(json.loads(out["body"])["predictions"]) == 200_000
    # parsing and encoding hold the GIL in single C calls, so /ready can wait for one of them; never for
    # the whole request, and never as long as the gateway's check waits
    assert slowest < CHECK_TIMEOUT_S, f"/ready took {slowest:.2f} s while the body was parsed"


def test_bodies_over_the_limit_are_refused_before_they_are_held(serve, sklearn_model) -> None:
    s = serve({"name": "huge_sk", "processor": "sklearn", "model_path": str(sklearn_model)},
              env={"EAS_MAX_BODY_BYTES": str(4 * 1024 * 1024)})
    before = _rss_mb(s.proc.pid)
    body = json.dumps({"instances": [ROW] * 2_400_000}).encode()  # 47 MB, as in the issue
    status, answer = s.post(body, timeout=60)
    assert status == 413
    assert "EAS_MAX_BODY_BYTES" in json.loads(answer)["error"]
    chunks = (body[i:i + 1 << 20] for i in range(0, len(body), 1 << 20))  # chunked: no length to check first
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    try:
        conn.request("POST", "/", body=chunks, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed while the client still sent: refused all the same
    finally:
        conn.close()
    assert _rss_mb(s.proc.pid) - before < 50, "a refused body must not be held"
    assert s.post({"instances": [ROW]})[0] == 200
