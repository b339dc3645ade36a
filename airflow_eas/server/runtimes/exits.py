"""Process exits as events: one thread waits on a pidfd per instance and wakes the loop when one
ends, so the loop needs no timer to notice a death (and its idle cost does not grow per instance).
Works for adopted processes too, which are not our children."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
from collections.abc import Callable

log = logging.getLogger("airflow_eas.server")


class ExitWatcher:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}  # pid -> pidfd
        self._callback: Callable[[], None] | None = None
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None

    def start(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="eas-exits", daemon=True)
            self._thread.start()

    def watch(self, pid: int) -> None:
        with self._lock:
            if pid in self._fds:
                return
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # already gone, or no pidfd on this kernel: the loop's timer notices
                return
            self._fds[pid] = fd
            self._selector.register(fd, selectors.EVENT_READ, pid)
        os.write(self._wakeup_w, b"x")

    def _run(self) -> None:
        while True:
            ended = False
            for key, _ in self._selector.select():
                if key.data is None:
                    os.read(self._wakeup_r, 4096)
                    continue
                with self._lock:
                    self._selector.unregister(key.fd)
                    self._fds.pop(key.data, None)
                    with contextlib.suppress(OSError):
                        os.close(key.fd)
                ended = True
            if ended and self._callback is not None:
                try:
                    self._callback()
                except Exception:  # the watcher must outlive a bad callback
                    log.exception("exit callback failed")
