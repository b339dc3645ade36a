"""A loop error repeated every tick is logged once a period, with how often it recurred."""

from __future__ import annotations

import logging

import pytest

from airflow_eas.server.reconciler.throttle import ErrorThrottle


def test_the_same_error_is_logged_once_per_period_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.throttle")
    throttle = ErrorThrottle(log, period=0.2)
    with caplog.at_level(logging.ERROR, logger="test.throttle"):
        for _ in range(50):
            throttle.report("reconcile failed", OSError("disk full"))
        assert [r.getMessage() for r in caplog.records] == ["reconcile failed: disk full"]
        assert throttle.last_error == "disk full"
        throttle._logged_at -= 1  # the period has passed
        throttle.report("reconcile failed", OSError("disk full"))
        throttle.report("reconcile failed", ValueError("another"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[1] == "reconcile failed: disk full (and 49 times more in the last 0 s)"
    assert messages[2] == "reconcile failed: another", "a new error is logged at once"
    throttle.clear()
    assert throttle.last_error is None
