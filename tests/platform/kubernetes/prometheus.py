"""A real Prometheus (Debian's ``prometheus`` binary) scraping a tiny exporter of Istio's gateway metrics.

The exporter emits what Istio's gateway reports per destination Service -- the default query
set's series: ``istio_requests_total`` (by response code) and the
``istio_request_duration_milliseconds`` histogram -- at rates the test sets, or split by the
weights of an HTTPRoute read from the emulated API server (what a gateway would do). Pods'
CPU and memory come out as the kubelet's cAdvisor series: ``container_cpu_usage_seconds_total``
and ``container_memory_working_set_bytes`` per container, and (as cAdvisor does) once more for
the whole pod with ``container=""``, which a reader must not add twice.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

BUCKETS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
NAME = "istio_requests_total"
HIST = "istio_request_duration_milliseconds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Backend:
    """One destination Service's traffic: requests per second, share of 5xx, latencies (ms) taken in turn."""

    rps: float = 0.0
    error_rate: float = 0.0
    latencies_ms: tuple[float, ...] = (20.0,)
    requests: dict[str, int] = field(default_factory=lambda: {"200": 0, "503": 0})
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total_ms: float = 0.0
    _carry: float = 0.0
    _errors_due: float = 0.0
    _served: int = 0


@dataclass
class PodUsage:
    """One pod's container ``main``: CPU cores it burns, its working set in MB."""

    cpu_cores: float = 0.0
    memory_mb: float = 0.0
    cpu_seconds: float = 0.0



def metrics_server(render: Callable[[], str]) -> ThreadingHTTPServer:
    """A loopback HTTP server answering every GET with ``render()`` as Prometheus text (not yet serving)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


class Exporter:
    """Counts requests per (namespace, service) over time and serves them as Prometheus text on /metrics."""

    def __init__(self, tick: float = 0.1) -> None:
        self.backends: dict[tuple[str, str], Backend] = {}
        self.pods: dict[tuple[str, str], PodUsage] = {}
        self.split: Callable[[], dict[tuple[str, str], float]] | None = None  # per-backend rps from routes
        self.tick = tick
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.server = metrics_server(self.render)
        self.port = self.server.server_address[1]
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._run, daemon=True)]

    def set(self, namespace: str, service: str, **traffic: object) -> Backend:
        with self._lock:
            backend = self.backends.setdefault((namespace, service), Backend())
            for key, value in traffic.items():
                setattr(backend, key, value)
            return backend

    def set_pod(self, namespace: str, pod: str, *, cpu_cores: float, memory_mb: float) -> None:
        with self._lock:
            usage = self.pods.setdefault((namespace, pod), PodUsage())
            usage.cpu_cores, usage.memory_mb = cpu_cores, memory_mb

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            dt, last = now - last, now
            rates = self.split() if self.split else {}
            with self._lock:
                for key, rps in rates.items():
                    self.backends.setdefault(key, Backend()).rps = rps
                for usage in self.pods.values():
                    usage.cpu_seconds += usage.cpu_cores * dt
                for backend in self.backends.values():
                    backend._carry += backend.rps * dt
                    n, backend._carry = int(backend._carry), backend._carry - int(backend._carry)
                    for _ in range(n):
                        self._observe(backend)

    def _observe(self, b: Backend) -> None:
        # Deterministic shares (no sampling noise): errors spread evenly, latencies in turn.
        b._errors_due += b.error_rate
        code = "503" if b._errors_due >= 1 else "200"
        if code == "503":
            b._errors_due -= 1
        b.requests[code] += 1
        ms = b.latencies_ms[b._served % len(b.latencies_ms)]
        b._served += 1
        b.total_ms += ms
        index = next((i for i, le in enumerate(BUCKETS) if ms <= le), len(BUCKETS))
        b.buckets[index] += 1

    def render(self) -> str:
        lines = [f"# TYPE {NAME} counter", f"# TYPE {HIST} histogram",
                 "# TYPE container_cpu_usage_seconds_total counter", "# TYPE container_memory_working_set_bytes gauge"]
        with self._lock:
            for (ns, svc), b in sorted(self.backends.items()):
                labels = (f'reporter="source",source_workload="eas-gateway-istio",destination_service_namespace="{ns}",'
                          f'destination_service_name="{svc}"')
                for code, count in b.requests.items():
                    lines.append(f'{NAME}{{{labels},response_code="{code}"}} {count}')
                cumulative = 0
                for le, count in zip((*BUCKETS, "+Inf"), b.buckets, strict=True):
                    cumulative += count
                    lines.append(f'{HIST}_bucket{{{labels},le="{le}"}} {cumulative}')
                lines.append(f"{HIST}_sum{{{labels}}} {b.total_ms}")
                lines.append(f"{HIST}_count{{{labels}}} {cumulative}")
            for (ns, pod), usage in sorted(self.pods.items()):
                for container in ("main", ""):
                    labels = f'namespace="{ns}",pod="{pod}",container="{container}"'
                    lines.append(f"container_cpu_usage_seconds_total{{{labels}}} {usage.cpu_seconds}")
                    lines.append(f"container_memory_working_set_bytes{{{labels}}} {usage.memory_mb * 1048576}")
        return "\n".join(lines) + "\n"

    def start(self) -> Exporter:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


class Prometheus:
    """``prometheus`` on a free loopback port, scraping the exporter every second, with its own temp storage."""

    def __init__(self, exporter_port: int) -> None:
        self.binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.dir = Path(tempfile.mkdtemp(prefix="eas-prometheus-"))
        self.port = free_port()
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: gateway\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Prometheus:
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "prometheus.log", "wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-500:]}")
            try:
                up = requests.get(f"{self.url}/api/v1/query", params={"query": 'up{job="gateway"}'}, timeout=1).json()
                if up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1":
                    return self
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.3)
        try:
            targets = requests.get(f"{self.url}/api/v1/targets", timeout=2).text[-600:]
        except requests.RequestException as exc:
            targets = repr(exc)
        log = (self.dir / "prometheus.log").read_text()[-600:]
        self.stop()
        raise RuntimeError(f"prometheus did not scrape the exporter in time: targets {targets}; log {log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
