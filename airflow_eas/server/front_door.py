"""The control plane's front door, before FastAPI: the admin token is checked from the headers and
the body size from ``Content-Length`` (and while it streams) before one byte of a body is read.

``/metrics`` also takes the read-only metrics token; the console (``/console/``) signs its users in
with a session of its own (console/session.py), so only the body limit applies to it.

An unauthenticated client cannot make the server read, buffer or parse anything; bad JSON
without a token is a 401, not a 400; a body over the limit is a 413 at once.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from airflow_eas.errors import EasError, PayloadTooLarge, Unauthorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})  # no body, no secrets
CONSOLE_PREFIX = "/console"
METRICS_PATH = "/metrics"


class BodyTooLarge(HTTPException):
    """Raised from a body read past the limit: an HTTPException, so FastAPI passes it on instead of calling
    the body unparsable (400); ``build_app`` answers it as PayloadTooLarge."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class FrontDoor:
    def __init__(self, app: ASGIApp, token: str, max_body: int, *, metrics_token: str | None = None) -> None:
        self.app, self.token, self.max_body = app, token.encode(), max_body
        self.metrics_token = metrics_token.encode() if metrics_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        console = path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        if not console and not self._authorized(headers.get(b"authorization", b""), metrics=path == METRICS_PATH):
            await _answer(send, Unauthorized(
                "missing or wrong admin token (Authorization: Bearer <DATA_DIR/admin_token>)"
                + ("; /metrics also takes DATA_DIR/metrics_token (read-only)" if path == METRICS_PATH else "")))
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _answer(send, self._too_large())
            return
        await self._counted(scope, receive, send)

    def _authorized(self, header: bytes, *, metrics: bool) -> bool:
        given = header.strip()
        if given[:7].lower() == b"bearer ":
            given = given[7:].strip()
        if metrics and self.metrics_token is not None and hmac.compare_digest(given, self.metrics_token):
            return True
        return hmac.compare_digest(given, self.token)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body over the control plane's limit of {self.max_body} bytes "
                               "(EAS_MAX_SPEC_BYTES); a spec this large is not a spec")

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A chunked body is counted as it arrives and cut off at the limit."""
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, self._too_large())


async def _answer(send: Send, error: EasError) -> None:
    body = json.dumps(error.to_dict()).encode()
    await send({
        "type": "http.response.start", "status": error.status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
