"""Triggers: poll the platform from the triggerer, without holding a worker slot.

Each check is one plain function (:func:`check_service_ready`, :func:`check_metrics`) that
the sensors call in poke mode and the triggers call in deferred mode, so both modes
decide alike. The checks use the sync :class:`~airflow_eas.platform.base.Platform`; the
triggers run them in ``asyncio.to_thread`` so the triggerer's event loop never blocks.

Every event is a JSON-safe dict: ``{"status": "success" | "failed" | "error" | "timeout",
"service": ..., "message": ..., ...}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_eas.analysis import ERROR, FAILED, SUCCESSFUL, Thresholds, Verdict, error_verdict, evaluate
from airflow_eas.errors import EasError, NotFound
from airflow_eas.platform.base import FAILED as SERVICE_FAILED
from airflow_eas.platform.base import Platform

SUCCESS = "success"
FAILURE = "failed"
ERROR_STATUS = "error"
TIMEOUT = "timeout"


# -- checks (shared by sensors and triggers) ----------------------------------------------------


def check_service_ready(platform: Platform, service: str) -> dict[str, Any] | None:
    """``None`` while the service comes up; a success event when ready; a failed event when Failed."""
    try:
        info = platform.describe(service)
    except NotFound as exc:
        return {"status": FAILURE, "service": service, "message": exc.message}
    if info.status == SERVICE_FAILED:
        errors = [e.message for e in info.events if e.level == "error"][-3:]
        detail = info.reason or "; ".join(errors) or "no reason given"
        return {"status": FAILURE, "service": service, "message": f"{service} failed to start: {detail}"}
    if info.ready:
        return {
            "status": SUCCESS,
            "service": service,
            "version": info.version,
            "endpoint": info.endpoint,
            "running_instances": info.running_instances,
            "message": f"{service} is ready: {info.running_instances}/{info.instances} instances of version "
            f"{info.version}",
        }
    return None


def check_metrics(
    platform: Platform, service: str, limits: Thresholds, baseline_service: str | None = None
) -> Verdict:
    """Measure ``service`` (and the baseline member) once and judge it; platform errors give ``Error``."""
    try:
        candidate = platform.metrics(service, limits.window_seconds)
    except EasError as exc:
        return error_verdict(f"cannot read metrics of {service}: {exc.message}", limits)
    baseline = None
    if baseline_service and limits.baseline_tolerance is not None:
        try:
            baseline = platform.metrics(baseline_service, limits.window_seconds)
        except EasError:
            baseline = None  # no comparison possible; the absolute limits still apply
    return evaluate(candidate, limits, baseline)


def verdict_event(service: str, verdict: Verdict) -> dict[str, Any] | None:
    """The trigger event for a final verdict; ``None`` for Inconclusive / Error (keep measuring)."""
    status = {SUCCESSFUL: SUCCESS, FAILED: FAILURE}.get(verdict.result)
    if status is None:
        return None
    return {"status": status, "service": service, "message": verdict.message, "verdict": verdict.to_dict()}


# Airflow 3.3 may fail a deferred task whose trigger fires within about `[workers] min_heartbeat_interval`
# (5 s by default) of the deferral: the executor's late "success" for the deferring process meets the task
# already queued again (apache/airflow#71580). So waits shorter than this run in the worker, sensors check
# inline this long before they defer, and no trigger of ours fires sooner than this after the deferral.
MIN_DEFER_SECONDS = 8.0


# -- triggers -----------------------------------------------------------------------------------


class EasBaseTrigger(BaseTrigger):
    """Polls one check until it gives an event, the deadline passes, or the platform keeps failing.

    Serializes the common arguments itself; a subclass gives its own in
    :meth:`trigger_kwargs` and implements :meth:`poll` (sync; run in a thread).

    :param eas_conn_id: the Airflow connection of the platform
    :param poll_interval: seconds between checks
    :param deadline: Unix time after which a ``timeout`` event is sent (None: never)
    :param max_consecutive_errors: platform errors in a row before an ``error`` event
    """

    def __init__(
        self,
        *,
        eas_conn_id: str,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        self.eas_conn_id = eas_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_consecutive_errors = max_consecutive_errors
        self.last_message = ""

    def trigger_kwargs(self) -> dict[str, Any]:
        return {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "eas_conn_id": self.eas_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_consecutive_errors": self.max_consecutive_errors,
                **self.trigger_kwargs(),
            },
        )

    def poll(self, platform: Platform) -> dict[str, Any] | None:
        """One check: an event dict when done, ``None`` to keep waiting. Raise EasError on platform errors."""
        raise NotImplementedError

    def subject(self) -> str:
        return ""

    def _platform(self) -> Platform:
        from airflow_eas.hooks.eas import EasHook

        return EasHook(self.eas_conn_id).get_platform()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Never fire sooner than MIN_DEFER_SECONDS after the deferral (an Airflow 3.3 race, see there).
        not_before = time.monotonic() + MIN_DEFER_SECONDS
        async for event in self._poll_until_event():
            await asyncio.sleep(max(0.0, not_before - time.monotonic()))
            yield event
            return

    async def _poll_until_event(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        platform: Platform | None = None
        while True:
            try:
                if platform is None:
                    platform = await asyncio.to_thread(self._platform)
                event = await asyncio.to_thread(self.poll, platform)
                errors = 0
            except EasError as exc:
                errors += 1
                self.last_message = exc.message
                self.log.warning("EAS check failed (%d in a row): %s", errors, exc.message)
                if errors >= self.max_consecutive_errors:
                    yield TriggerEvent(
                        self._event(ERROR_STATUS, f"{errors} failed checks in a row: {exc.message}")
                    )
                    return
                event = None
            if event is not None:
                yield TriggerEvent(event)
                return
            if self.deadline is not None and time.time() >= self.deadline:
                last = f"; last check: {self.last_message}" if self.last_message else ""
                yield TriggerEvent(self._event(TIMEOUT, f"no result before the deadline{last}"))
                return
            await asyncio.sleep(self.poll_interval)

    def _event(self, status: str, message: str) -> dict[str, Any]:
        return {"status": status, "service": self.subject(), "message": message}


class EasServiceReadyTrigger(EasBaseTrigger):
    """Fires when a service is ready (success) or Failed (failed).

    :param service: the service to watch
    """

    def __init__(self, *, service: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    def trigger_kwargs(self) -> dict[str, Any]:
        return {"service": self.service}

    def subject(self) -> str:
        return self.service

    def poll(self, platform: Platform) -> dict[str, Any] | None:
        event = check_service_ready(platform, self.service)
        if event is None:
            self.last_message = f"{self.service} is not ready yet"
        return event


class EasMetricsTrigger(EasBaseTrigger):
    """Fires when a service's metrics pass (success) or clearly breach the limits (failed).

    Inconclusive measurements (too little traffic) keep it waiting until the deadline:
    no data is never a pass.

    :param service: the service to judge
    :param thresholds: :class:`~airflow_eas.analysis.Thresholds` as a dict
    :param baseline_service: the live member to compare latency with
    """

    def __init__(
        self, *, service: str, thresholds: dict[str, Any], baseline_service: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.thresholds = dict(thresholds)
        self.baseline_service = baseline_service
        self.limits = Thresholds.from_dict(self.thresholds)

    def trigger_kwargs(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "thresholds": self.thresholds,
            "baseline_service": self.baseline_service,
        }

    def subject(self) -> str:
        return self.service

    def poll(self, platform: Platform) -> dict[str, Any] | None:
        verdict = check_metrics(platform, self.service, self.limits, self.baseline_service)
        self.last_message = verdict.message
        if verdict.result == ERROR:
            raise EasError(verdict.message)
        self.log.info("Analysis of %s: %s", self.service, verdict.message)
        return verdict_event(self.service, verdict)
