"""A bounded client load against 127.0.0.1 for tests: counts every outcome."""

from __future__ import annotations

import http.client
import select
import threading
import time
from collections import Counter
from urllib.parse import urlparse


class Load:
    """Threads sending POSTs with keep-alive until stopped (or `max_seconds` pass)."""

    def __init__(self, url: str, token: str, *, threads: int = 4, body: bytes = b"{}", max_seconds: float = 120,
                 pause: float = 0.0) -> None:
        parsed = urlparse(url)
        self.host, self.port, self.path = parsed.hostname, parsed.port, parsed.path
        self.token, self.body, self.threads, self.pause = token, body, threads, pause
        self.max_seconds = max_seconds
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self.bodies: Counter = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.failures)

    @property
    def errors(self) -> int:
        return len(self.failures)  # 5xx answers and failed connections

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Authorization": self.token, "Content-Type": "application/json"}
        while not self._stop.is_set() and time.monotonic() < deadline:
            if _dropped(conn):  # the server closed the idle connection: reconnect, as urllib3 does
                conn.close()
            try:
                conn.request("POST", self.path, body=self.body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                with self._lock:
                    self.statuses[resp.status] += 1
                    if resp.status >= 500:
                        self.failures.append(f"HTTP {resp.status}: {data[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(f"{exc.__class__.__name__}: {exc} at {time.time():.3f}")
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            if self.pause:
                time.sleep(self.pause)
        conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    sock = conn.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
