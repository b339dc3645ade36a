"""The model server: a raw ASGI app on uvicorn (uvloop + httptools), loading and warm-up.

The HTTP socket opens first, so ``GET /ready`` answers 503 with a reason while the
processor loads and warms up; predictions are refused (503) until then. A startup
failure prints one line ``airflow-eas serving: <reason>`` to stderr and exits non-zero.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from typing import Any

from airflow_eas.serving.engine import RATE_LIMITED, Engine
from airflow_eas.serving.processor import BaseProcessor, StartupError
from airflow_eas.spec import ServiceSpec

PREFIX = "airflow-eas serving"
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NOT_READY_START = {"type": "http.response.start", "status": 503}
# the gateway refuses larger bodies first (eas server --max-body-mb); this guards a direct caller
MAX_BODY = int(os.environ.get("EAS_MAX_BODY_BYTES", str(32 * 1024 * 1024)))
LARGE_BODY = 256 * 1024  # bodies from this size are parsed on a worker thread, never on the event loop
TOO_LARGE = (json.dumps({"error": f"request body over {MAX_BODY} bytes (EAS_MAX_BODY_BYTES)"}).encode(), 413)
BAD_MD5 = (b'{"error":"the body does not match its Content-MD5 header"}', 400)


def log(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


class ModelServer:
    def __init__(self, spec: ServiceSpec, *, execution: str = "auto") -> None:
        self.spec = spec
        self.execution = execution
        self.ready = False
        self.reason = "starting"
        self.engine: Engine | None = None
        self.started_at = time.monotonic()
        self.ready_after_s: float | None = None
        self.warmed = 0

    # -- startup -------------------------------------------------------------------

    async def startup(self) -> None:
        from airflow_eas.serving import loader, storage, warmup

        loop = asyncio.get_running_loop()
        spec = self.spec
        mounts = storage.load_mounts()
        resolver = storage.Resolver(spec.name, mounts, storage.cache_dir(spec.name))
        self.reason = "loading the processor"
        proc, builtin = await loop.run_in_executor(None, loader.build_processor, spec, resolver)
        self.reason = "initializing the processor"
        await loop.run_in_executor(None, loader.initialize, proc, builtin)
        engine = Engine(proc, spec.metadata.rpc, builtin=builtin, execution=self.execution)
        engine.start(loop)
        self.engine = engine
        if spec.warm_up_data_path and spec.metadata.warm_up_count > 0:
            self.reason = "warming up"
            path = await loop.run_in_executor(
                None, resolver.resolve, spec.warm_up_data_path, "warm_up_data_path"
            )
            bodies = warmup.read_requests(path)

            def progress(done: int, total: int) -> None:
                self.warmed = done
                self.reason = f"warming up ({done}/{total} requests)"

            auto = engine.auto
            engine.auto = False  # warm-up's first calls (lazy loading) must not decide the execution mode
            try:
                await warmup.replay(path.name, bodies, spec.metadata.warm_up_count, self.predict, progress)
            finally:
                engine.auto = auto
                engine.requests, engine.status, engine.batches, engine.batched = 0, {}, 0, 0
        self.ready_after_s = time.monotonic() - self.started_at
        self.reason = "ready"
        self.ready = True
        log(
            f"ready after {self.ready_after_s:.2f}s: {_describe(spec, proc)}, execution {engine.mode}"
            + (f", {self.warmed} warm-up requests" if self.warmed else "")
        )

    async def predict(self, body: bytes) -> tuple[bytes, int]:
        """The serving path without HTTP (used by warm-up)."""
        engine = self.engine
        if engine.inline and not engine.batching:
            return engine.call(body)
        return await engine.submit(body)

    # -- HTTP --------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "POST":
            if path == "/" or path.startswith("/api/predict/"):
                body, refused = await _read_body(scope, receive)
                if refused is not None:
                    await _answer(send, refused[1], refused[0])
                    return
                t0 = time.perf_counter()
                engine = self.engine
                if not self.ready:
                    out, status = json.dumps({"error": f"not ready: {self.reason}"}).encode(), 503
                elif engine.rate and engine.throttled():
                    out, status = RATE_LIMITED
                elif engine.inline and not engine.batching and len(body) < LARGE_BODY:
                    out, status = engine.call(body)
                    dt = time.perf_counter() - t0
                    engine.batches += 1
                    engine.batched += 1
                    engine.record(status, dt)
                    engine.note_inline(dt)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [
                                _JSON if out[:1] in b"{[" else _TEXT,
                                (b"content-length", str(len(out)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": out})
                    return
                else:
                    out, status = await engine.submit(body, large=len(body) >= LARGE_BODY)
                if engine is not None:
                    engine.record(status, time.perf_counter() - t0)
                await _answer(send, status, out)
                return
        elif scope["method"] == "GET":
            if path == "/ready":
                if self.ready:
                    await _answer(send, 200, b'{"ready":true}')
                else:
                    await _answer(send, 503, json.dumps({"ready": False, "reason": self.reason}).encode())
                return
            if path == "/metrics":
                await _answer(send, 200, json.dumps(self.metrics()).encode())
                return
        if path in ("/", "/ready", "/metrics") or path.startswith("/api/predict/"):
            await _answer(send, 405, b'{"error":"method not allowed"}')
        else:
            await _answer(
                send, 404, b'{"error":"not found: POST / or /api/predict/<name>, GET /ready, /metrics"}'
            )

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service": self.spec.name,
            "ready": self.ready,
            "reason": self.reason,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "ready_after_s": None if self.ready_after_s is None else round(self.ready_after_s, 3),
            "pid": os.getpid(),
        }
        if self.engine is not None:
            out.update(self.engine.snapshot())
        else:
            out.update({"requests": 0, "errors": 0, "queue_length": 0, "batches": 0, "mean_batch_size": None})
        return out


async def _read_body(scope: dict, receive: Any) -> tuple[bytes, tuple[bytes, int] | None]:
    """The whole request body, or why it is refused: over :data:`MAX_BODY` (declared or streamed, so a
    huge body is never held), or not matching the Content-MD5 header the caller sent (the gateway checks
    an EAS signature over that header when the body is larger than it buffers)."""
    md5 = None
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
            return b"", TOO_LARGE
        if name == b"content-md5":
            md5 = value.decode("latin-1").strip()
    msg = await receive()
    body = msg.get("body", b"")
    if msg.get("more_body"):
        parts, size = [body], len(body)
        while msg.get("more_body"):
            msg = await receive()
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return b"", TOO_LARGE
            parts.append(chunk)
        body = b"".join(parts)
    if md5 is not None:
        digest = hashlib.md5(body) if len(body) < LARGE_BODY else await asyncio.to_thread(hashlib.md5, body)
        # hex as EAS's SDKs send it, or base64 as RFC 1864 has it
        if md5.lower() != digest.hexdigest() and md5 != base64.b64encode(digest.digest()).decode():
            return b"", BAD_MD5
    return body, None


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON if body[:1] in b"{[" else _TEXT, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _describe(spec: ServiceSpec, proc: BaseProcessor) -> str:
    if spec.processor:
        return f"processor {spec.processor} ({getattr(proc, 'model_file', spec.model_path)})"
    return f"processor {spec.processor_mainclass} from {spec.processor_entry}"


async def serve(spec: ServiceSpec, host: str, port: int, execution: str = "auto") -> int:
    """Run until stopped; the exit code (non-zero if the instance never became ready)."""
    import uvicorn

    app = ModelServer(spec, execution=execution)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    starting = asyncio.ensure_future(app.startup())
    await asyncio.wait({serving, starting}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # the server stopped first: could not listen, or a signal
        starting.cancel()
        try:
            await serving
        except SystemExit as exc:
            log(f"cannot serve on {host}:{port} (see the error above); exiting")
            return int(exc.code or 1)
        log("stopped before ready")
        return 1
    exc = starting.exception()
    if exc is not None:
        server.should_exit = True
        try:
            await serving
        except (SystemExit, Exception):  # noqa: BLE001 - the startup failure is the reason to report
            pass
        if isinstance(exc, StartupError):
            log(exc.message)
            return exc.exit_code
        log(f"startup failed: {type(exc).__name__}: {exc}")
        return 1
    try:
        await serving
    except SystemExit as exc:
        return int(exc.code or 1)
    return 0
