"""The generic base of every EAS operator and sensor: it owns the hook.

Like amazon's ``AwsBaseOperator``: a subclass declares its fields and its work; the
hook is one cached property built from ``eas_conn_id`` (``hook_class`` may be swapped
for a subclass of :class:`EasHook`), the platform comes from the hook, and the common
template fields are merged by :func:`eas_template_fields`.

Every EAS operator also gets DataWorks' scheduling parameters in its templates:
``{{ bizdate }}`` (the business date, the day before the scheduled day, ``yyyymmdd``)
and ``{{ cyctime }}`` (the scheduled time, ``yyyymmddHHMMSS``), in the DAG's timezone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

import pendulum
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_eas.errors import EasError
from airflow_eas.hooks.eas import EasHook
from airflow_eas.platform.base import Platform
from airflow_eas.triggers.eas import MIN_DEFER_SECONDS


def wait_or_defer(operator: BaseOperator, seconds: float, *, deferrable: bool, method_name: str) -> bool:
    """Wait ``seconds``: in the worker when short (or not deferrable), else by deferring to a timer trigger.

    Returns True when the wait is over (the caller goes on); deferring never returns.
    """
    if seconds <= 0:
        return True
    if not deferrable or seconds <= MIN_DEFER_SECONDS:
        time.sleep(seconds)
        return True
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    operator.defer(trigger=DateTimeTrigger(moment=pendulum.now("UTC").add(seconds=seconds)), method_name=method_name)
    return False  # unreachable: defer raises


def eas_template_fields(*fields: str) -> tuple[str, ...]:
    """Template fields of an EAS operator: its own plus the common ones, without duplicates."""
    return tuple(dict.fromkeys((*fields, "eas_conn_id")))


def dataworks_params(context: Mapping[str, Any]) -> dict[str, str]:
    """DataWorks' scheduling parameters for a run: ``bizdate`` and ``cyctime``.

    The scheduled time is the logical date (a cron run) or, for runs without one (manual
    and asset-triggered runs in Airflow 3), the run's ``run_after``; both are shown in the
    DAG's timezone, as DataWorks shows them in the project's.
    """
    moment = context.get("logical_date")
    if moment is None:
        dag_run = context.get("dag_run")
        moment = getattr(dag_run, "run_after", None) or pendulum.now("UTC")
    dag = context.get("dag")
    tz = getattr(dag, "timezone", None) or pendulum.UTC
    local = pendulum.instance(moment).in_timezone(tz) if isinstance(moment, datetime) else pendulum.now(tz)
    return {
        "bizdate": (local - timedelta(days=1)).strftime("%Y%m%d"),
        "cyctime": local.strftime("%Y%m%d%H%M%S"),
    }


def apply_retry_policy(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task method: an :class:`EasError` a retry cannot fix (``retryable`` False) fails the
    task at once (``AirflowFailException``, no retries); any other error leaves Airflow to retry."""
    if getattr(func, _POLICY_APPLIED, False):
        return func

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EasError as exc:
            if exc.retryable:
                raise
            raise AirflowFailException(f"{exc.__class__.__name__}: {exc.message}") from exc

    setattr(wrapper, _POLICY_APPLIED, True)
    return wrapper


_POLICY_APPLIED = "_eas_retry_policy"
_TASK_METHODS = ("execute", "execute_complete")


class EasHookMixin:
    """Owns the :class:`EasHook` of an operator or sensor.

    :param eas_conn_id: the Airflow connection of the platform (default ``eas_default``)
    """

    hook_class: ClassVar[type[EasHook]] = EasHook
    eas_conn_id: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every subclass's task methods get the retry policy, so no operator or sensor can forget it.
        super().__init_subclass__(**kwargs)
        for name in _TASK_METHODS:
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, apply_retry_policy(method))

    @cached_property
    def hook(self) -> EasHook:
        return self.hook_class(eas_conn_id=self.eas_conn_id)

    @property
    def platform(self) -> Platform:
        return self.hook.get_platform()

    def render_template_fields(self, context, jinja_env=None) -> None:
        for key, value in dataworks_params(context).items():
            context.setdefault(key, value)  # type: ignore[attr-defined]
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]


class EasBaseOperator(EasHookMixin, BaseOperator):
    """Base of the EAS operators.

    :param eas_conn_id: the Airflow connection of the platform (default ``eas_default``)
    """

    template_fields = eas_template_fields()
    ui_color = "#e8f1ff"

    def __init__(self, *, eas_conn_id: str = EasHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eas_conn_id = eas_conn_id
