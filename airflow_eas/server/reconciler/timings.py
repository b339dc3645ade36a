"""Every interval and timeout of the control loop, in one place (tests shorten them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Timings:
    tick: float = 0.1  # the loop's pace while something is in motion (starting, draining, stopping)
    idle_tick: float = 30.0  # at rest, a pass this often as a safety net (changes and exits wake the loop)
    poll_tick: float = 1.0  # at rest, for a runtime that cannot report exits: how often instances are polled
    failures_to_fail: int = 3  # consecutive deaths before ready that mark a service Failed
    startup_timeout: float = 300.0  # STARTING this long without being ready: killed, counted as a failure
    drain_timeout: float = 30.0  # DRAINING this long: stopped even with requests in flight
    drain_settle: float = 0.3  # DRAINING at least this long, so the gateway stops sending before we count
    grace: float = 10.0  # SIGTERM to SIGKILL
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    probe_timeout: float = 0.5  # GET /ready of a processor instance
    connect_timeout: float = 0.2  # TCP connect to an image instance
    gateway_wait: float = 15.0  # HAProxy to start, reload, or retire its old workers: each waited for this long
    gateway_apply_timeout: float = 60.0  # an API call waiting for its change to reach the gateway
    sampling_period: float = 1.0  # how often busy routes' log sampling is reconsidered
    error_log_period: float = 60.0  # the same loop error is logged at most once per period
    stop_poll: float = 0.05  # while waiting for instances to exit at shutdown
    join_timeout: float = 30.0  # the loop thread finishing its tick at shutdown
    image_gc_period: float = 3600.0  # unused images are also pruned this often (besides at start and on releases)
    # a pause between starting an instance and saving its handle: only crash tests set it (the server is a
    # separate process there, hence the environment variable)
    launch_record_delay: float = field(
        default_factory=lambda: float(os.environ.get("EAS_TEST_LAUNCH_RECORD_DELAY", "0") or 0))
