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

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_eas.analysis import ERROR, Thresholds
from airflow_eas.errors import EasError
from airflow_eas.hooks.eas import EasHook
from airflow_eas.operators.base import EasHookMixin, eas_template_fields
from airflow_eas.triggers.eas import (
    FAILURE,
    MIN_DEFER_SECONDS,
    SUCCESS,
    EasBaseTrigger,
    EasMetricsTrigger,
    EasServiceReadyTrigger,
    check_metrics,
    check_service_ready,
    verdict_event,
)


class EasBaseSensor(EasHookMixin, BaseSensorOperator):
    """Base of the EAS sensors: one check, used by :meth:`poke` and by the trigger alike.

    :param eas_conn_id: the Airflow connection of the platform (default ``eas_default``)
    :param deferrable: wait in the triggerer instead of a worker slot
    :param max_consecutive_errors: platform errors in a row before the task fails (retryable)
    """

    template_fields = eas_template_fields()

    def __init__(
        self,
        *,
        eas_conn_id: str = EasHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_errors: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eas_conn_id = eas_conn_id
        self.deferrable = deferrable
        self.max_consecutive_errors = max_consecutive_errors
        self._errors = 0

    # subclasses ---------------------------------------------------------------------------------

    def check(self) -> dict[str, Any] | None:
        """One check: an event dict when done, ``None`` to keep waiting; EasError on platform errors."""
        raise NotImplementedError

    def make_trigger(self, deadline: float) -> EasBaseTrigger:
        raise NotImplementedError

    # modes ----------------------------------------------------------------------------------------

    def poke(self, context: Any) -> bool | PokeReturnValue:
        try:
            event = self.check()
        except EasError as exc:
            self._errors += 1
            if self._errors >= self.max_consecutive_errors:
                raise AirflowException(f"{self._errors} failed checks in a row: {exc.message}") from exc
            self.log.warning("Check failed (%d in a row): %s", self._errors, exc.message)
            return False
        self._errors = 0
        if event is None:
            return False
        if event["status"] != SUCCESS:
            raise AirflowFailException(event["message"])
        self.log.info(event["message"])
        return PokeReturnValue(is_done=True, xcom_value=event)

    def execute(self, context: Any) -> Any:
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
            time.sleep(min(float(self.poke_interval), 1.0))
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
        }


class EasServiceReadySensor(EasBaseSensor):
    """Wait until every wanted instance of a service's current version serves.

    Fails at once when the service is Failed (it cannot start).

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
        return check_service_ready(self.platform, self.service)

    def make_trigger(self, deadline: float) -> EasBaseTrigger:
        return EasServiceReadyTrigger(service=self.service, **self._trigger_common(deadline))


class EasMetricsSensor(EasBaseSensor):
    """Wait until a service's data-plane metrics pass the limits; fail at once on a clear breach.

    Too few requests is inconclusive: the sensor keeps waiting and fails at its timeout
    (no data is never a pass).

    :param service: the service to judge; templated
    :param window_seconds: the metrics window
    :param min_requests: requests needed in the window for a verdict
    :param max_error_rate: highest share of failed requests (0-1)
    :param max_p99_ms: highest p99 latency (None: not checked)
    :param baseline_service: the live member to compare p99 with; templated
    :param baseline_tolerance: the candidate's p99 may be at most this factor of the baseline's
    :param eas_conn_id: the Airflow connection of the platform
    :param deferrable: wait in the triggerer instead of a worker slot
    """

    template_fields = eas_template_fields("service", "baseline_service")
    ui_color = "#f0e6ff"

    def __init__(
        self,
        *,
        service: str,
        window_seconds: int = 60,
        min_requests: int = 20,
        max_error_rate: float = 0.01,
        max_p99_ms: float | None = None,
        baseline_service: str | None = None,
        baseline_tolerance: float | None = None,
        poke_interval: float = 5,
        timeout: float = 600,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.service = service
        self.baseline_service = baseline_service
        self.limits = Thresholds(
            window_seconds=window_seconds,
            min_requests=min_requests,
            max_error_rate=max_error_rate,
            max_p99_ms=max_p99_ms,
            baseline_tolerance=baseline_tolerance,
        )

    def check(self) -> dict[str, Any] | None:
        verdict = check_metrics(self.platform, self.service, self.limits, self.baseline_service or None)
        if verdict.result == ERROR:
            raise EasError(verdict.message)
        self.log.info("Analysis of %s: %s", self.service, verdict.message)
        return verdict_event(self.service, verdict)

    def make_trigger(self, deadline: float) -> EasBaseTrigger:
        return EasMetricsTrigger(
            service=self.service,
            thresholds=self.limits.to_dict(),
            baseline_service=self.baseline_service or None,
            **self._trigger_common(deadline),
        )
