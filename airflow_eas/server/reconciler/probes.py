"""Readiness of one instance: ``GET /ready`` of a processor, a TCP connect to an image."""

from __future__ import annotations

import http.client
import socket


def is_ready(kind: str, host: str, port: int, *, probe_timeout: float, connect_timeout: float) -> bool:
    if kind == "image":
        try:
            with socket.create_connection((host, port), timeout=connect_timeout):
                return True
        except OSError:
            return False
    conn = http.client.HTTPConnection(host, port, timeout=probe_timeout)
    try:
        conn.request("GET", "/ready")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
