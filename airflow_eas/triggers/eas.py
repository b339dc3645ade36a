"""Triggers: poll the platform from the triggerer, without holding a worker slot.

Each check decides in one plain function (:func:`service_ready_event`, :func:`analysis_event`)
from what was read; the sensors read through the sync :class:`~airflow_eas.platform.base.Platform`
(:func:`check_service_ready`, :func:`analysis_step`), the triggers await the same reads on an
:class:`~airflow_eas.platform.aio.AsyncPlatform` (``httpx`` for ``eas server``), so both modes
decide alike and the triggerer's event loop never blocks. A trigger of a leased rollout renews
the lease while it waits (the run is alive).

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
from airflow_eas.analysis import (
    ERROR,
    FAILED,
    SUCCESSFUL,
    AnalysisPlan,
    AnalysisRun,
    Measurement,
    describe_measurement,
    measure,
    measure_async,
)
from airflow_eas.errors import EasError, NotFound, RolloutAborted
from airflow_eas.platform.aio import AsyncPlatform
from airflow_eas.platform.base import FAILED as SERVICE_FAILED
from airflow_eas.platform.base import Platform, ServiceInfo

SUCCESS = "success"
FAILURE = "failed"
ERROR_STATUS = "error"
TIMEOUT = "timeout"
LOG_LINES = 20  # a service that cannot start: this many of its last log lines in the failure

# analysis phase -> event status: Inconclusive fails too (no data is never a pass)
_PHASE_STATUS = {SUCCESSFUL: SUCCESS, FAILED: FAILURE, ERROR: ERROR_STATUS}


# -- checks (shared by sensors and triggers) ----------------------------------------------------


def service_ready_event(
    service: str, info: ServiceInfo | NotFound, tail: str = "", log_lines: int = 0
) -> dict[str, Any] | None:
    """``None`` while the service comes up; a success event when ready; a failed event when Failed or gone.

    ``tail`` is the service's last ``log_lines`` log lines, read when it is Failed (see :func:`wants_tail`).
    """
    if isinstance(info, NotFound):
        return {"status": FAILURE, "service": service, "message": info.message}
    if info.status == SERVICE_FAILED:
        errors = [e.message for e in info.events if e.level == "error"][-3:]
        detail = info.reason or "; ".join(errors) or "no reason given"
        message = f"{service} failed to start: {detail}"
        if tail.strip():
            message += f"\nlast {log_lines} log lines:\n{tail.strip()}"
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


def wants_tail(info: ServiceInfo, log_lines: int) -> bool:
    return bool(log_lines) and info.status == SERVICE_FAILED


def check_service_ready(platform: Platform, service: str, *, log_lines: int = 0) -> dict[str, Any] | None:
    """:func:`service_ready_event` of the service now; with ``log_lines``, a failure ends with its last log lines."""
    try:
        info = platform.describe(service)
    except NotFound as exc:
        return service_ready_event(service, exc)
    tail = ""
    if wants_tail(info, log_lines):
        try:
            tail = platform.logs(service, log_lines)
        except EasError:
            tail = ""  # the failure's reason is the news; its log is a bonus
    return service_ready_event(service, info, tail, log_lines)


async def check_service_ready_async(
    platform: AsyncPlatform, service: str, *, log_lines: int = 0
) -> dict[str, Any] | None:
    """:func:`check_service_ready` on the caller's event loop (a trigger)."""
    try:
        info = await platform.describe(service)
    except NotFound as exc:
        return service_ready_event(service, exc)
    tail = ""
    if wants_tail(info, log_lines):
        try:
            tail = await platform.logs(service, log_lines)
        except EasError:
            tail = ""
    return service_ready_event(service, info, tail, log_lines)


def analysis_event(
    service: str, plan: AnalysisPlan, run: AnalysisRun, measurement: Measurement, log: Any = None
) -> dict[str, Any] | None:
    """Add ``measurement`` to ``run``; the final event once the run settles, else None (measure again)."""
    run.add(measurement)
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


def analysis_step(
    platform: Platform,
    service: str,
    plan: AnalysisPlan,
    run: AnalysisRun,
    baseline_service: str | None = None,
    log: Any = None,
) -> dict[str, Any] | None:
    """Take one measurement into ``run``; the final event once the run settles, else None (measure again)."""
    return analysis_event(service, plan, run, measure(platform, service, plan, baseline_service), log)


async def analysis_step_async(
    platform: AsyncPlatform,
    service: str,
    plan: AnalysisPlan,
    run: AnalysisRun,
    baseline_service: str | None = None,
    log: Any = None,
) -> dict[str, Any] | None:
    """:func:`analysis_step` on the caller's event loop (a trigger)."""
    measurement = await measure_async(platform, service, plan, baseline_service)
    return analysis_event(service, plan, run, measurement, log)


# Airflow 3.3 may fail a deferred task whose trigger fires within about `[workers] min_heartbeat_interval`
# (5 s by default) of the deferral: the executor's late "success" for the deferring process meets the task
# already queued again (apache/airflow#71580). So waits shorter than this run in the worker, sensors check
# inline this long before they defer, and no trigger of ours fires sooner than this after the deferral.
MIN_DEFER_SECONDS = 8.0


# -- triggers -----------------------------------------------------------------------------------


class EasBaseTrigger(BaseTrigger):
    """Polls one check until it gives an event, the deadline passes, or the platform keeps failing.

    Serializes the common arguments itself; a subclass gives its own in
    :meth:`trigger_kwargs` and implements :meth:`poll` (async, on an :class:`AsyncPlatform`).

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

    async def poll(self, platform: AsyncPlatform | None) -> dict[str, Any] | None:
        """One check: an event dict when done, ``None`` to keep waiting. Raise EasError on platform errors.

        ``platform`` is None only where :meth:`_platform` gives none (a wait with no lease to renew).
        """
        raise NotImplementedError

    def subject(self) -> str:
        return ""

    def _platform(self) -> AsyncPlatform | None:
        # Sync: the hook reads the Airflow connection (run in a thread, see _wait_for_event).
        from airflow_eas.hooks.eas import EasHook

        return EasHook(self.eas_conn_id).get_async_platform()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Never fire sooner than MIN_DEFER_SECONDS after the deferral (an Airflow 3.3 race, see there).
        not_before = time.monotonic() + MIN_DEFER_SECONDS
        async for event in self._poll_until_event():
            await asyncio.sleep(max(0.0, not_before - time.monotonic()))
            yield event
            return

    async def _poll_until_event(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait_for_event())

    async def _wait_for_event(self) -> dict[str, Any]:
        errors = 0
        platform: AsyncPlatform | None = None
        connected = False
        try:
            while True:
                try:
                    if not connected:
                        platform = await asyncio.to_thread(self._platform)
                        connected = True
                    await self._heartbeat(platform)
                    event = await self.poll(platform)
                    errors = 0
                except RolloutAborted as exc:
                    return self._event(FAILURE, exc.message)
                except EasError as exc:
                    errors += 1
                    self.last_message = exc.message
                    self.log.warning("EAS check failed (%d in a row): %s", errors, exc.message)
                    if errors >= self.max_consecutive_errors:
                        return self._event(ERROR_STATUS, f"{errors} failed checks in a row: {exc.message}")
                    event = None
                if event is not None:
                    return event
                if self.deadline is not None and time.time() >= self.deadline:
                    last = f"; last check: {self.last_message}" if self.last_message else ""
                    return self._event(TIMEOUT, f"no result before the deadline{last}")
                await asyncio.sleep(self.poll_interval)
        finally:
            if platform is not None:
                await platform.aclose()

    def _event(self, status: str, message: str) -> dict[str, Any]:
        return {"status": status, "service": self.subject(), "message": message}

    async def _heartbeat(self, platform: AsyncPlatform | None) -> None:
        # Renew a few times per TTL, not at every poll: a one-second poll need not cost a write a second.
        ref = rollout.LeaseRef.from_dict(self.lease)
        if ref is None or platform is None:
            return
        if time.monotonic() - self._renewed_at < max(1.0, min(ref.ttl_seconds / 4, 10.0)):
            return
        await rollout.heartbeat_async(platform, ref)
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

    async def poll(self, platform: AsyncPlatform | None) -> dict[str, Any] | None:
        if time.time() >= self.moment:
            return {"status": SUCCESS, "service": "", "message": "wait over"}
        return None

    def _platform(self) -> AsyncPlatform | None:
        # A plain wait needs the platform only to renew a lease.
        return super()._platform() if self.lease else None


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

    async def poll(self, platform: AsyncPlatform | None) -> dict[str, Any] | None:
        event = await check_service_ready_async(platform, self.service, log_lines=self.log_lines)
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

    async def poll(self, platform: AsyncPlatform | None) -> dict[str, Any] | None:
        event = await analysis_step_async(
            platform, self.service, self.plan, self.run_state, self.baseline_service, self.log
        )
        self.last_message = self.run_state.measurements[-1]["reasons"][0] if self.run_state.measurements else ""
        return event
