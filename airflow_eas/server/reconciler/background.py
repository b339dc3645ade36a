"""Calls that may block (a readiness probe, an engine call, a log join) run beside the loop.

A handler asks for an instance's observation and gets :data:`PENDING` until it is done;
the outcome is collected on a later tick (not woken for: every tick asks again, so a wake
per outcome would spin the loop). Commands
(terminate, kill, release) are fired and not waited for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger("airflow_eas.server")

PENDING: Any = object()


class Background:
    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._jobs: dict[str, tuple[str, Future]] = {}  # instance id -> (the state it was asked in, job)

    def observe(self, key: str, state: str, fn: Callable[[], Any]) -> Any:
        """``fn()``'s result once done, else PENDING (starting it if it is not running). A result asked
        for in another state is stale: it is dropped and asked for again."""
        asked = self._jobs.get(key)
        if asked is not None and asked[0] != state and asked[1].done():
            del self._jobs[key]
            asked = None
        if asked is None:
            self._jobs[key] = (state, self._pool.submit(fn))
            return PENDING
        if asked[0] != state or not asked[1].done():
            return PENDING
        del self._jobs[key]
        return asked[1].result()

    def fire(self, what: str, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` and only log a failure (a terminate of a container already gone)."""

        def run() -> None:
            try:
                fn(*args)
            except Exception:  # a command beside the loop must not vanish silently
                log.exception("%s failed", what)

        self._pool.submit(run)

    def forget(self, key: str) -> None:
        self._jobs.pop(key, None)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
