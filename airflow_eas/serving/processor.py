"""The custom processor API (EAS's, in Python) and the error every startup failure raises."""

from __future__ import annotations

import json
from typing import Any

from airflow_eas.errors import StartupError

__all__ = ["BaseProcessor", "StartupError"]


class BaseProcessor:
    """Subclass it, load the model in :meth:`initialize`, answer requests in :meth:`process`.

    ``process(data: bytes)`` returns ``(body, status)``; the body may be bytes, str, or
    anything JSON-serialisable. An optional ``batch_process(list_of_bytes)`` returning one
    ``(body, status)`` per request is used when ``metadata.rpc.batching`` is on.
    """

    _eas_model_path: str | None = None

    def initialize(self) -> None:
        """Load the model; called once per instance before warm-up."""

    def process(self, data: bytes) -> tuple[Any, int]:
        raise NotImplementedError("a processor must implement process(data) -> (body, status)")

    def get_model_path(self) -> str | None:
        """The local path of ``model_path`` (downloaded and unpacked if it was an archive)."""
        return self._eas_model_path


def encode_body(body: Any) -> bytes:
    """What a processor returned, as response bytes."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    if body is None:
        return b""
    return json.dumps(body, separators=(",", ":")).encode()
