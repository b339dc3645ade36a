"""Request handling inside one instance: EAS ``metadata.rpc`` semantics and metrics.

Three ways to run the model call, chosen once (``--execution``, default ``auto``):

- inline: on the event loop, no hand-off (the fastest for models that answer in
  microseconds, which most single-row sklearn/xgboost/lightgbm/onnx calls do);
- threads: on ``worker_threads`` threads, so slow or blocking processors do not stall
  the server, and a request still waiting past ``keepalive`` is answered 408;
- batching (``rpc.batching``): requests gathered for up to ``max_batch_timeout`` ms or
  ``max_batch_size`` requests, one ``batch_process`` call per batch, run inline or on
  the worker threads like the above.

``auto`` runs built-in processors inline and moves them to the worker threads if their
calls turn out slow (a running average over 2 ms); custom processors run on threads.
Queue full answers 450, over ``rate_limit`` requests per second 429, past keepalive 408.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_eas.serving.processor import BaseProcessor, encode_body
from airflow_eas.spec import RpcConfig

AUTO_THREADS_AFTER_S = 0.002  # inline calls slower than this on average move to the worker threads
LATENCY_WINDOW = 4096  # latencies kept for /metrics percentiles (a power of two)

TIMEOUT = (b'{"error":"request timed out (keepalive)"}', 408)
QUEUE_FULL = (b'{"error":"queue full (max_queue_size)"}', 450)
RATE_LIMITED = (b'{"error":"rate limit exceeded (rate_limit)"}', 429)


def _safe_process(proc: BaseProcessor):
    """process() normalised to (bytes, int); an exception is a 500 with its message."""
    process = proc.process

    def call(body: bytes) -> tuple[bytes, int]:
        try:
            out, status = process(body)
        except Exception as exc:  # noqa: BLE001 - user code may raise anything: answer 500, keep serving
            return _error(exc), 500
        if out.__class__ is not bytes:
            out = encode_body(out)
        return out, int(status)

    return call


def _safe_batch(proc: BaseProcessor, single):
    batch = getattr(proc, "batch_process", None)
    if batch is None:
        return lambda bodies: [single(b) for b in bodies]

    def call(bodies: list[bytes]) -> list[tuple[bytes, int]]:
        try:
            results = list(batch(bodies))
            if len(results) != len(bodies):
                raise ValueError(f"batch_process returned {len(results)} results for {len(bodies)} requests")
        except Exception as exc:  # noqa: BLE001 - user code may raise anything: answer 500, keep serving
            return [(_error(exc), 500)] * len(bodies)
        return [(b if b.__class__ is bytes else encode_body(b), int(s)) for b, s in results]

    return call


def _error(exc: BaseException) -> bytes:
    import json

    return json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()


class Engine:
    def __init__(
        self, proc: BaseProcessor, rpc: RpcConfig, *, builtin: bool, execution: str = "auto"
    ) -> None:
        self.call = _safe_process(proc)
        self.call_batch = _safe_batch(proc, self.call)
        self.timeout = rpc.keepalive / 1000.0
        self.max_queue = rpc.max_queue_size
        self.rate = rpc.rate_limit
        self.batching = rpc.batching
        self.max_batch = rpc.max_batch_size
        self.batch_wait = rpc.max_batch_timeout / 1000.0
        self.worker_threads = rpc.worker_threads
        self.inline = execution == "inline" or (execution == "auto" and builtin)
        self.auto = execution == "auto" and builtin
        self.pool: ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.queued = 0  # accepted, model call not started
        self._pending: list[tuple[bytes, asyncio.Future, float]] = []
        self._batch_timer: asyncio.TimerHandle | None = None
        self._tokens = float(self.rate)
        self._tokens_at = time.monotonic()
        self.avg_call_s = 0.0
        # metrics
        self.requests = 0
        self.status: dict[int, int] = {}
        self.batches = 0
        self.batched = 0
        self.lat = [0.0] * LATENCY_WINDOW

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pool = ThreadPoolExecutor(self.worker_threads, thread_name_prefix="eas-worker")

    @property
    def mode(self) -> str:
        return ("batching+" if self.batching else "") + ("inline" if self.inline else "threads")

    # -- admission -------------------------------------------------------------

    def throttled(self) -> bool:
        """Token bucket of ``rate_limit`` per second (burst of one second's worth)."""
        now = time.monotonic()
        tokens = min(float(self.rate), self._tokens + (now - self._tokens_at) * self.rate)
        self._tokens_at = now
        if tokens < 1.0:
            self._tokens = tokens
            return True
        self._tokens = tokens - 1.0
        return False

    def record(self, status: int, seconds: float) -> None:
        n = self.requests
        self.lat[n & (LATENCY_WINDOW - 1)] = seconds
        self.requests = n + 1
        st = self.status
        st[status] = st.get(status, 0) + 1

    def note_inline(self, seconds: float) -> None:
        """Running average of inline call times; too slow and auto moves to threads."""
        avg = self.avg_call_s + (min(seconds, 0.02) - self.avg_call_s) * 0.01
        self.avg_call_s = avg
        if avg > AUTO_THREADS_AFTER_S and self.auto:
            self.inline = False

    # -- the request paths -----------------------------------------------------

    async def submit(self, body: bytes, *, large: bool = False) -> tuple[bytes, int]:
        """Every path but unbatched inline (which the HTTP handler runs itself). A ``large`` body always
        goes to the worker threads: parsing it inline would stall the event loop, readiness included."""
        if self.queued >= self.max_queue:
            return QUEUE_FULL
        loop = self.loop
        deadline = loop.time() + self.timeout
        if self.batching and not large:
            fut = loop.create_future()
            with self._lock:
                self.queued += 1
            pending = self._pending
            pending.append((body, fut, deadline))
            if len(pending) >= self.max_batch:
                if self._batch_timer is not None:
                    self._batch_timer.cancel()
                    self._batch_timer = None
                self._flush()
            elif len(pending) == 1:
                if self.batch_wait > 0:
                    self._batch_timer = loop.call_later(self.batch_wait, self._flush)
                else:
                    self._batch_timer = loop.call_soon(self._flush)
        elif self.inline and not large:
            self.batches += 1
            self.batched += 1
            return self.call(body)
        else:
            fut = loop.create_future()
            with self._lock:
                self.queued += 1
            self.pool.submit(self._run_one, body, deadline, fut)
        timer = loop.call_at(deadline, _expire, fut)
        try:
            return await fut
        except TimeoutError:
            return TIMEOUT
        finally:
            timer.cancel()

    def _run_one(self, body: bytes, deadline: float, fut: asyncio.Future) -> None:
        with self._lock:
            self.queued -= 1
        if self.loop.time() > deadline or fut.done():
            return  # waited past keepalive: the client has its 408 already
        with self._lock:
            self.batches += 1
            self.batched += 1
        result = self.call(body)
        self.loop.call_soon_threadsafe(_resolve, fut, result)

    def _flush(self) -> None:
        self._batch_timer = None
        pending = self._pending
        while pending:
            batch = pending[: self.max_batch]
            del pending[: self.max_batch]
            if self.inline:
                with self._lock:
                    self.queued -= len(batch)
                _deliver(batch, self._run_batch_items(batch))
            else:
                self.pool.submit(self._run_batch, batch)

    def _run_batch(self, batch) -> None:
        with self._lock:
            self.queued -= len(batch)
        results = self._run_batch_items(batch)
        self.loop.call_soon_threadsafe(_deliver, batch, results)

    def _run_batch_items(self, batch):
        now = self.loop.time()
        live = [i for i, item in enumerate(batch) if item[2] >= now and not item[1].done()]
        results: list[Any] = [TIMEOUT] * len(batch)
        if live:
            with self._lock:
                self.batches += 1
                self.batched += len(live)
            out = self.call_batch([batch[i][0] for i in live])
            for i, r in zip(live, out, strict=True):
                results[i] = r
        return results

    # -- metrics -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        n = min(self.requests, LATENCY_WINDOW)
        lat = sorted(self.lat[:n]) if self.requests <= LATENCY_WINDOW else sorted(self.lat)

        def pct(p: float) -> float | None:
            return round(lat[min(n - 1, int(p * n))] * 1000, 3) if n else None

        errors = sum(c for s, c in self.status.items() if s >= 500)
        return {
            "requests": self.requests,
            "errors": errors,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "queue_length": self.queued,
            "batches": self.batches,
            "mean_batch_size": round(self.batched / self.batches, 3) if self.batches else None,
            "latency_ms": {
                "window": n,
                "mean": round(sum(lat) / n * 1000, 3) if n else None,
                "p50": pct(0.50),
                "p95": pct(0.95),
                "p99": pct(0.99),
            },
            "execution": self.mode,
            "worker_threads": self.worker_threads,
        }


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _resolve(fut: asyncio.Future, result) -> None:
    if not fut.done():
        fut.set_result(result)


def _deliver(batch, results) -> None:
    for (_, fut, _), res in zip(batch, results, strict=True):
        if not fut.done():
            fut.set_result(res)
