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

from airflow_eas import rollout
from airflow_eas.errors import EasError
from airflow_eas.hooks.eas import EasHook
from airflow_eas.platform.base import Platform
from airflow_eas.triggers.eas import MIN_DEFER_SECONDS, EasWaitTrigger


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, as every deferrable operator of Airflow's providers defaults to."""
    from airflow.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def default_holder(context: Any) -> str:
    """The lease holder of a run: ``<dag_id>/<run_id>`` (the same for every task of the run)."""
    return f"{context['dag'].dag_id}/{context['run_id']}"


def wait_or_defer(operator: Any, seconds: float, *, deferrable: bool, method_name: str, context: Any = None) -> bool:
    """Wait ``seconds``: in the worker when short (or not deferrable), else by deferring to a timer trigger.

    The wait renews the run's lease (a long bake never lets it lapse). Returns True when the
    wait is over (the caller goes on); deferring never returns.
    """
    if seconds <= 0:
        return True
    lease = operator.lease_ref(context) if context is not None else None
    if not deferrable or seconds <= MIN_DEFER_SECONDS:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, max(1.0, lease.ttl_seconds / 4) if lease else left))
            if lease and deadline - time.monotonic() > 0:
                rollout.heartbeat(operator.platform, lease)
        return True
    operator.defer(
        trigger=EasWaitTrigger(
            moment=time.time() + seconds,
            eas_conn_id=operator.eas_conn_id,
            lease=lease.to_dict() if lease else None,
        ),
        method_name=method_name,
    )
    return False  # unreachable: defer raises


def eas_template_fields(*fields: str) -> tuple[str, ...]:
    """Template fields of an EAS operator: its own plus the common ones, without duplicates."""
    return tuple(dict.fromkeys((*fields, "eas_conn_id", "lease_ttl_seconds")))


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


class SchedulingParam:
    """``{{ bizdate }}`` / ``{{ cyctime }}`` as a DAG user macro: the value for the task being rendered.

    A macro is one object for the whole DAG, so it reads the running task's context when it is
    turned into text (templates are rendered inside the task, where that context is set).
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def __str__(self) -> str:
        from airflow.sdk import get_current_context

        return dataworks_params(get_current_context())[self.key]

    def __getitem__(self, index: Any) -> str:
        return str(self)[index]

    def __eq__(self, other: object) -> bool:
        return str(self) == other

    __hash__ = None  # type: ignore[assignment]


def dataworks_macros() -> dict[str, SchedulingParam]:
    """``user_defined_macros`` giving every task of a DAG ``{{ bizdate }}`` and ``{{ cyctime }}``."""
    return {"bizdate": SchedulingParam("bizdate"), "cyctime": SchedulingParam("cyctime")}


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


def with_heartbeat(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task method: renew the run's group lease first (see :meth:`EasHookMixin.renew_lease`)."""
    if getattr(func, _HEARTBEAT_APPLIED, False):
        return func

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.renew_lease(args[0] if args else kwargs.get("context"))
        return func(self, *args, **kwargs)

    setattr(wrapper, _HEARTBEAT_APPLIED, True)
    return wrapper


_POLICY_APPLIED = "_eas_retry_policy"
_HEARTBEAT_APPLIED = "_eas_heartbeat"
_TASK_METHODS = ("execute", "execute_complete")


class EasHookMixin:
    """Owns the :class:`EasHook` of an operator or sensor, and renews the rollout's lease.

    :param eas_conn_id: the Airflow connection of the platform (default ``eas_default``)
    :param lease_group: the group whose lease this task's run holds (set by the rollout DAG):
        every task renews it when it starts and while it waits, so that the platform's
        dead-man's switch never fires while the run is alive
    :param lease_ttl_seconds: the TTL each renewal sets; templated
    """

    hook_class: ClassVar[type[EasHook]] = EasHook
    renews_lease: ClassVar[bool] = True  # False for tasks that take, free or undo the lease's work
    eas_conn_id: str
    lease_group: str | None = None
    lease_ttl_seconds: int | str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every subclass's task methods get the heartbeat and the retry policy, so none can forget them.
        super().__init_subclass__(**kwargs)
        for name in _TASK_METHODS:
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, apply_retry_policy(with_heartbeat(method)))

    def lease_ref(self, context: Any) -> rollout.LeaseRef | None:
        """The lease this task renews, or None (not part of a leased rollout)."""
        if not (self.renews_lease and self.lease_group and self.lease_ttl_seconds and context):
            return None
        return rollout.LeaseRef(self.lease_group, default_holder(context), int(self.lease_ttl_seconds))

    def renew_lease(self, context: Any) -> None:
        """The heartbeat: RolloutAborted (fails the task at once) when the platform took the group back."""
        lease = self.lease_ref(context)
        if lease is not None:
            rollout.heartbeat(self.platform, lease)

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

    def __init__(
        self,
        *,
        eas_conn_id: str = EasHook.default_conn_name,
        lease_group: str | None = None,
        lease_ttl_seconds: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eas_conn_id = eas_conn_id
        self.lease_group = lease_group
        self.lease_ttl_seconds = lease_ttl_seconds
