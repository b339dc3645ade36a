"""Sensors: wait for a service to be ready, or for its metrics to pass.

Both work in poke (or reschedule) mode and deferred: with ``deferrable=True`` the sensor
checks once, then hands the waiting to a trigger (no worker slot held) and resumes in
``execute_complete``, which raises on anything but success. A clear failure (a Failed
service, a metric breach) fails the task at once, without retries.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_eas.analysis import AnalysisPlan, AnalysisRun, describe_measurement
from airflow_eas.errors import EasError
from airflow_eas.hooks.eas import EasHook
from airflow_eas.operators.base import EasHookMixin, default_deferrable, eas_template_fields
from airflow_eas.triggers.eas import (
    ERROR_STATUS,
    FAILURE,
    LOG_LINES,
    MIN_DEFER_SECONDS,
    SUCCESS,
    EasBaseTrigger,
    EasMetricsTrigger,
    EasServiceReadyTrigger,
    analysis_step,
    check_service_ready,
)


class TaskState:
    """State a sensor keeps across pokes, also in ``reschedule`` mode (a new process per poke).

    Backed by Airflow's task state store when there is one (Airflow >= 3.3), keyed by the
    try number so that a retry starts afresh; else by the sensor object (poke mode).
    """

    def __init__(self, context: Any, fallback: dict[str, Any]) -> None:
        self._store = context.get("task_state_store") if context else None
        ti = context.get("ti") if context else None
        self._suffix = f"_try{getattr(ti, 'try_number', 0)}"
        self._fallback = fallback

    def get(self, key: str, default: Any = None) -> Any:
        if self._store is not None:
            return self._store.get(key + self._suffix, default)
        return self._fallback.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self._store is not None:
            self._store.set(key + self._suffix, value)
        else:
            self._fallback[key] = value


class EasBaseSensor(EasHookMixin, BaseSensorOperator):
    """Base of the EAS sensors: one check, used by :meth:`poke` and by the trigger alike.

    :param eas_conn_id: the Airflow connection of the platform (default ``eas_default``)
    :param deferrable: wait in the triggerer instead of a worker slot
    :param max_consecutive_errors: platform errors in a row before the task fails (retryable); counted
        across pokes in ``reschedule`` mode too
    :param lease_group: the group whose lease the run holds (renewed at every poke)
    :param lease_ttl_seconds: the TTL each renewal sets
    """

    template_fields = eas_template_fields()

    def __init__(
        self,
        *,
        eas_conn_id: str = EasHook.default_conn_name,
        deferrable: bool | None = None,
        max_consecutive_errors: int = 5,
        lease_group: str | None = None,
        lease_ttl_seconds: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eas_conn_id = eas_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.max_consecutive_errors = max_consecutive_errors
        self.lease_group = lease_group
        self.lease_ttl_seconds = lease_ttl_seconds
        self._local_state: dict[str, Any] = {}
        self._context: Any = None

    # subclasses ---------------------------------------------------------------------------------

    def check(self) -> dict[str, Any] | None:
        """One check: an event dict when done, ``None`` to keep waiting; EasError on platform errors."""
        raise NotImplementedError

    def make_trigger(self, deadline: float) -> EasBaseTrigger:
        raise NotImplementedError

    def inline_interval(self) -> float:
        """Seconds between the checks made before deferring."""
        return min(float(self.poke_interval), 1.0)

    def state(self) -> TaskState:
        return TaskState(self._context, self._local_state)

    # modes ----------------------------------------------------------------------------------------

    def poke(self, context: Any) -> bool | PokeReturnValue:
        self._context = context
        self.renew_lease(context)
        state = self.state()
        try:
            event = self.check()
        except EasError as exc:
            errors = int(state.get("consecutive_errors", 0)) + 1
            state.set("consecutive_errors", errors)
            if errors >= self.max_consecutive_errors:
                raise AirflowException(f"{errors} failed checks in a row: {exc.message}") from exc
            self.log.warning("Check failed (%d in a row): %s", errors, exc.message)
            return False
        if state.get("consecutive_errors", 0):
            state.set("consecutive_errors", 0)
        if event is None:
            return False
        if event["status"] == ERROR_STATUS:  # the platform or a metrics source: worth a retry
            raise AirflowException(event["message"])
        if event["status"] != SUCCESS:
            raise AirflowFailException(event["message"])
        self.log.info(event["message"])
        return PokeReturnValue(is_done=True, xcom_value=event)

    def execute(self, context: Any) -> Any:
        self._context = context
        if not self.deferrable:
            return super().execute(context)
        # Quick outcomes are settled here: a trigger firing right after the deferral meets an Airflow 3.3
        # race (see MIN_DEFER_SECONDS), so check inline for that long first.
        started = time.monotonic()
        while True:
            try:
                event = self.check()
            except EasError as exc:
                self.log.warning("Check failed, retrying: %s", exc.message)
                event = None
            if event is not None:
                return self.execute_complete(context, event)
            if time.monotonic() - started >= MIN_DEFER_SECONDS:
                break
            time.sleep(self.inline_interval())
        timeout = float(self.timeout) if self.timeout is not None else 7 * 24 * 3600.0
        self.defer(
            trigger=self.make_trigger(deadline=time.time() + timeout),
            method_name="execute_complete",
            # Backstop only: the trigger itself ends at the deadline with an explanatory event.
            timeout=timedelta(seconds=timeout + 60),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event:
            raise AirflowException("the trigger ended without an event")
        status, message = event.get("status"), event.get("message", "")
        if status == SUCCESS:
            self.log.info(message)
            return event
        if status in (FAILURE, "timeout"):
            raise AirflowFailException(f"{status}: {message}")
        raise AirflowException(f"{status}: {message}")

    def _trigger_common(self, deadline: float) -> dict[str, Any]:
        return {
            "eas_conn_id": self.eas_conn_id,
            "poll_interval": float(self.poke_interval),
            "deadline": deadline,
            "max_consecutive_errors": self.max_consecutive_errors,
            "lease": (ref.to_dict() if (ref := self.lease_ref(self._context)) else None),
        }


class EasServiceReadySensor(EasBaseSensor):
    """Wait until every wanted instance of a service's current version serves.

    Fails at once when the service is Failed (it cannot start), with its reason and last log lines.

    :param service: the service; templated
    :param eas_conn_id: the Airflow connection of the platform
    :param deferrable: wait in the triggerer instead of a worker slot
    """

    template_fields = eas_template_fields("service")
    ui_color = "#f0e6ff"

    def __init__(
        self, *, service: str, poke_interval: float = 2, timeout: float = 600, **kwargs: Any
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.service = service

    def check(self) -> dict[str, Any] | None:
        return check_service_ready(self.platform, self.service, log_lines=LOG_LINES)

    def make_trigger(self, deadline: float) -> EasBaseTrigger:
        return EasServiceReadyTrigger(service=self.service, log_lines=LOG_LINES, **self._trigger_common(deadline))


class EasMetricsSensor(EasBaseSensor):
    """Judge a canary over several measurements (Argo Rollouts' analysis): pass, or fail at once on a breach.

    A measurement every ``interval_seconds`` (data-plane metrics, the live member's latency for
    comparison, custom Prometheus checks); the analysis settles by ``count``, ``failure_limit``,
    ``inconclusive_limit`` and ``consecutive_error_limit`` (see :class:`~airflow_eas.analysis.AnalysisPlan`).
    Every measurement goes to the task log, and all of them to XCom (``measurements``).

    :param service: the service to judge; templated
    :param analysis: the analysis (an :class:`~airflow_eas.analysis.AnalysisPlan` or its dict, e.g. a
        plan's ``analysis`` section); templated, so values may come from ``params``
    :param baseline_service: the live member to compare p99 with; templated
    :param analysis_overrides: any :class:`~airflow_eas.analysis.AnalysisPlan` field as a keyword
        (``min_requests=50``), over ``analysis``
    :param eas_conn_id: the Airflow connection of the platform
    :param deferrable: wait in the triggerer instead of a worker slot
    """

    template_fields = eas_template_fields("service", "baseline_service", "analysis")
    template_fields_renderers = {"analysis": "json"}
    ui_color = "#f0e6ff"

    def __init__(
        self,
        *,
        service: str,
        analysis: AnalysisPlan | dict[str, Any] | None = None,
        baseline_service: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in AnalysisPlan.model_fields or k == "poll_seconds"}
        base = analysis.to_dict() if isinstance(analysis, AnalysisPlan) else dict(analysis or {})
        self.analysis = {**base, **fields}
        plan = AnalysisPlan.parse(self.analysis) if not _templated(self.analysis) else AnalysisPlan()
        kwargs.setdefault("poke_interval", plan.interval_seconds)
        super().__init__(timeout=timeout if timeout is not None else plan.budget_seconds, **kwargs)
        self.service = service
        self.baseline_service = baseline_service

    @property
    def plan(self) -> AnalysisPlan:
        return AnalysisPlan.parse(self.analysis)

    def execute(self, context: Any) -> Any:
        plan = self.plan  # rendered now: a bad value fails here, naming the field
        self.poke_interval = plan.interval_seconds
        return super().execute(context)

    def inline_interval(self) -> float:
        return float(self.poke_interval)  # measurements keep their interval before the deferral too

    def check(self) -> dict[str, Any] | None:
        state = self.state()
        run = AnalysisRun.from_dict(state.get("analysis_run"))
        event = analysis_step(self.platform, self.service, self.plan, run, self.baseline_service or None, self.log)
        state.set("analysis_run", run.to_dict())
        return event

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        plan = self.plan
        for i, m in enumerate((event or {}).get("measurements") or [], 1):
            self.log.info("%s", describe_measurement(i, plan, m))
        return super().execute_complete(context, event)

    def make_trigger(self, deadline: float) -> EasBaseTrigger:
        return EasMetricsTrigger(
            service=self.service,
            analysis=self.plan.to_dict(),
            baseline_service=self.baseline_service or None,
            run=self.state().get("analysis_run"),
            **self._trigger_common(deadline),
        )


def _templated(value: Any) -> bool:
    return "{{" in str(value) or "{%" in str(value)
