"""Triggers: poll the platform from the triggerer, without holding a worker slot.

Each check is one plain function (:func:`check_service_ready`, :func:`analysis_step`) that
the sensors call in poke mode and the triggers call in deferred mode, so both modes
decide alike. The checks use the sync :class:`~airflow_eas.platform.base.Platform`; the
triggers run them in ``asyncio.to_thread`` so the triggerer's event loop never blocks.
A trigger of a leased rollout renews the lease while it waits (the run is alive).

Every event is a JSON-safe dict: ``{"status": "success" | "failed" | "error" | "timeout",
"service": ..., "message": ..., ...}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_eas import rollout
from airflow_eas.analysis import ERROR, FAILED, SUCCESSFUL, AnalysisPlan, AnalysisRun, describe_measurement, measure
from airflow_eas.errors import EasError, NotFound, RolloutAborted
from airflow_eas.platform.base import FAILED as SERVICE_FAILED
from airflow_eas.platform.base import Platform

SUCCESS = "success"
FAILURE = "failed"
ERROR_STATUS = "error"
TIMEOUT = "timeout"
LOG_LINES = 20  # a service that cannot start: this many of its last log lines in the failure

# analysis phase -> event status: Inconclusive fails too (no data is never a pass)
_PHASE_STATUS = {SUCCESSFUL: SUCCESS, FAILED: FAILURE, ERROR: ERROR_STATUS}


# -- checks (shared by sensors and triggers) ----------------------------------------------------


def check_service_ready(platform: Platform, service: str, *, log_lines: int = 0) -> dict[str, Any] | None:
    """``None`` while the service comes up; a success event when ready; a failed event when Failed.

    With ``log_lines`` the failed event's message ends with the service's last log lines.
    """
    try:
        info = platform.describe(service)
    except NotFound as exc:
        return {"status": FAILURE, "service": service, "message": exc.message}
    if info.status == SERVICE_FAILED:
        errors = [e.message for e in info.events if e.level == "error"][-3:]
        detail = info.reason or "; ".join(errors) or "no reason given"
        message = f"{service} failed to start: {detail}"
        if log_lines:
            try:
                tail = platform.logs(service, log_lines).strip()
            except EasError:
                tail = ""
            if tail:
                message += f"\nlast {log_lines} log lines:\n{tail}"
        return {"status": FAILURE, "service": service, "message": message}
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


def analysis_step(
    platform: Platform,
    service: str,
    plan: AnalysisPlan,
    run: AnalysisRun,
    baseline_service: str | None = None,
    log: Any = None,
) -> dict[str, Any] | None:
    """Take one measurement into ``run``; the final event once the run settles, else None (measure again)."""
    run.add(measure(platform, service, plan, baseline_service))
    if log is not None:
        log.info("Analysis of %s, %s", service, describe_measurement(len(run.measurements), plan, run.measurements[-1]))
    phase = run.phase(plan)
    if phase is None:
        return None
    summary = run.summary(plan, phase)
    last = run.measurements[-1]
    return {
        "status": _PHASE_STATUS.get(phase, FAILURE),
        "service": service,
        "phase": phase,
        "message": f"analysis of {service}: {phase}: {summary}",
        # the analysis as one verdict (the rollout view draws it against the thresholds)
        "verdict": {"result": phase, "reasons": [summary], "candidate": last.get("candidate"),
                    "baseline": last.get("baseline"), "thresholds": plan.to_dict()},
        "measurements": run.measurements,
    }


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
    :param lease: the rollout's lease to renew while waiting (:class:`~airflow_eas.rollout.LeaseRef` as a dict)
    """

    def __init__(
        self,
        *,
        eas_conn_id: str,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        max_consecutive_errors: int = 5,
        lease: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.eas_conn_id = eas_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_consecutive_errors = max_consecutive_errors
        self.lease = dict(lease) if lease else None
        self.last_message = ""
        self._renewed_at = 0.0

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
                "lease": self.lease,
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
                await asyncio.to_thread(self._heartbeat, platform)
                event = await asyncio.to_thread(self.poll, platform)
                errors = 0
            except RolloutAborted as exc:
                yield TriggerEvent(self._event(FAILURE, exc.message))
                return
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

    def _heartbeat(self, platform: Platform) -> None:
        # Renew a few times per TTL, not at every poll: a one-second poll need not cost a write a second.
        ref = rollout.LeaseRef.from_dict(self.lease)
        if ref is None or time.monotonic() - self._renewed_at < max(1.0, min(ref.ttl_seconds / 4, 10.0)):
            return
        rollout.heartbeat(platform, ref)
        self._renewed_at = time.monotonic()


class EasWaitTrigger(EasBaseTrigger):
    """Fires at ``moment`` (Unix time), renewing the rollout's lease meanwhile (a bake, a scale-down delay).

    :param moment: when to fire
    """

    def __init__(self, *, moment: float, poll_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.moment = moment

    def trigger_kwargs(self) -> dict[str, Any]:
        return {"moment": self.moment}

    def poll(self, platform: Platform) -> dict[str, Any] | None:
        if time.time() >= self.moment:
            return {"status": SUCCESS, "service": "", "message": "wait over"}
        return None

    def _platform(self) -> Platform:
        # A plain wait needs the platform only to renew a lease.
        return super()._platform() if self.lease else None  # type: ignore[return-value]


class EasServiceReadyTrigger(EasBaseTrigger):
    """Fires when a service is ready (success) or Failed (failed).

    :param service: the service to watch
    :param log_lines: when it fails, add this many of its last log lines to the message
    """

    def __init__(self, *, service: str, log_lines: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.log_lines = log_lines

    def trigger_kwargs(self) -> dict[str, Any]:
        return {"service": self.service, "log_lines": self.log_lines}

    def subject(self) -> str:
        return self.service

    def poll(self, platform: Platform) -> dict[str, Any] | None:
        event = check_service_ready(platform, self.service, log_lines=self.log_lines)
        if event is None:
            self.last_message = f"{self.service} is not ready yet"
        return event


class EasMetricsTrigger(EasBaseTrigger):
    """Measures a service every ``poll_interval`` until its analysis settles (see :mod:`airflow_eas.analysis`).

    Fires ``success`` (Successful), ``failed`` (Failed or Inconclusive: no data is never a pass)
    or ``error`` (the metrics could not be read), with every measurement in the event.

    :param service: the service to judge
    :param analysis: :class:`~airflow_eas.analysis.AnalysisPlan` as a dict
    :param baseline_service: the live member to compare latency with
    :param run: the measurements taken before the deferral (an :class:`~airflow_eas.analysis.AnalysisRun` dict)
    """

    def __init__(
        self,
        *,
        service: str,
        analysis: dict[str, Any],
        baseline_service: str | None = None,
        run: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.analysis = dict(analysis)
        self.baseline_service = baseline_service
        self.plan = AnalysisPlan.parse(self.analysis)
        self.run_state = AnalysisRun.from_dict(run)

    def trigger_kwargs(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "analysis": self.analysis,
            "baseline_service": self.baseline_service,
            "run": self.run_state.to_dict(),
        }

    def subject(self) -> str:
        return self.service

    async def _poll_until_event(self) -> AsyncIterator[TriggerEvent]:
        # The first measurement after the deferral is one interval after the last one before it.
        await asyncio.sleep(self.poll_interval)
        async for event in super()._poll_until_event():
            yield event

    def poll(self, platform: Platform) -> dict[str, Any] | None:
        event = analysis_step(platform, self.service, self.plan, self.run_state, self.baseline_service, self.log)
        self.last_message = self.run_state.measurements[-1]["reasons"][0] if self.run_state.measurements else ""
        return event
