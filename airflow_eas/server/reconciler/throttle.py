"""Loop errors logged without flooding: the same error at most once a period, with a count."""

from __future__ import annotations

import logging
import time


class ErrorThrottle:
    def __init__(self, log: logging.Logger, period: float) -> None:
        self.log, self.period = log, period
        self.last_error: str | None = None
        self._logged_at = 0.0
        self._repeats = 0

    def report(self, what: str, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        now = time.monotonic()
        if message != self.last_error or now - self._logged_at >= self.period:
            suffix = f" (and {self._repeats} times more in the last {self.period:.0f} s)" if self._repeats else ""
            # the traceback once per new error; repeats say only how often
            self.log.error("%s: %s%s", what, message, suffix, exc_info=message != self.last_error)
            self._logged_at, self._repeats = now, 0
        else:
            self._repeats += 1
        self.last_error = message

    def clear(self) -> None:
        self.last_error, self._repeats = None, 0
