"""Warm-up: replay each request of ``warm_up_data_path`` ``warm_up_count`` times before ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from airflow_eas.serving.processor import StartupError


def read_requests(path: Path) -> list[bytes]:
    """One request body per line; blank lines are skipped."""
    if path.is_dir():
        raise StartupError(
            f"warm-up failed: warm_up_data_path {path} is a folder; give a file, one request per line", 4
        )
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise StartupError(f"warm-up failed: cannot read {path}: {exc.strerror}", 4) from None
    bodies = [line for line in lines if line.strip()]
    if not bodies:
        raise StartupError(f"warm-up failed: {path.name} holds no requests", 4)
    return bodies


async def replay(
    name: str,
    bodies: list[bytes],
    count: int,
    predict: Callable[[bytes], Awaitable[tuple[bytes, int]]],
    progress: Callable[[int, int], None],
) -> int:
    """Send every body ``count`` times through the serving path; fail on any non-2xx answer."""
    total = len(bodies) * count
    done = 0
    for number, body in enumerate(bodies, 1):
        for _ in range(count):
            out, status = await predict(body)
            if not 200 <= status < 300:
                snippet = out[:200].decode("utf-8", "replace").replace("\n", " ")
                raise StartupError(
                    f"warm-up failed: request {number} of {name} answered {status}: {snippet}", 4
                )
            done += 1
            progress(done, total)
    return total
