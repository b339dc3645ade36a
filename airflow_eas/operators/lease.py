"""A group's lease: one rollout at a time changes a group, from any DAG."""

from __future__ import annotations

from typing import Any

from airflow_eas import rollout
from airflow_eas.operators.base import EasBaseOperator, default_holder, eas_template_fields
from airflow_eas.platform.base import GuardSettings

__all__ = ["EasAcquireLeaseOperator", "EasReleaseLeaseOperator", "default_holder"]


class EasAcquireLeaseOperator(EasBaseOperator):
    """Take a group's lease so that no other rollout (from any DAG) changes the group meanwhile.

    The lease also names the group's stable member (the one serving its traffic now): if the
    lease lapses while traffic is split (the run died: every rollout task renews it), the
    platform gives all traffic back to that member by itself; with ``guard`` it also does so
    at once when the candidate fails clearly. The same holder may take it again (a retried
    task). When another holder has it, the task waits up to ``wait_seconds`` and then fails
    without retrying.

    :param group: the service group; templated
    :param holder: who holds the lease (default ``<dag_id>/<run_id>``); templated
    :param ttl_seconds: the lease lapses after this long unless renewed or released; templated
    :param wait_seconds: how long to wait for another holder's lease (default 0: fail at once); templated
    :param poll_interval: seconds between attempts while waiting
    :param guard: the platform's guard while the lease is held (a
        :class:`~airflow_eas.platform.base.GuardSettings` or its dict; None: no guard)
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "holder", "ttl_seconds", "wait_seconds")
    ui_color = "#eeeeee"
    renews_lease = False

    def __init__(
        self,
        *,
        group: str,
        holder: str | None = None,
        ttl_seconds: int | str = 7200,
        wait_seconds: float | str = 0,
        poll_interval: float = 10,
        guard: GuardSettings | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval
        self.guard = guard.to_dict() if isinstance(guard, GuardSettings) else guard

    def execute(self, context: Any) -> dict[str, Any]:
        holder = self.holder or default_holder(context)
        guard = GuardSettings.from_dict(self.guard).check() if self.guard else None
        lease = rollout.acquire_lease(
            self.platform,
            self.group,
            holder,
            ttl_seconds=int(self.ttl_seconds),
            guard=guard,
            wait_seconds=float(self.wait_seconds),
            poll_interval=self.poll_interval,
            on_wait=lambda _: self.log.info("Group %s is leased by another rollout; waiting", self.group),
        )
        self.log.info(
            "Leased group %s to %s for %s s (renewed by every task); stable member %s; guard %s",
            self.group, holder, self.ttl_seconds, lease.stable or "none (nothing serves)",
            guard.to_dict() if guard and lease.stable else "off",
        )  # fmt: skip
        return lease.to_dict()


class EasReleaseLeaseOperator(EasBaseOperator):
    """Give a group's lease back (a lease held by someone else is left alone).

    :param group: the service group; templated
    :param holder: who holds the lease (default ``<dag_id>/<run_id>``); templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "holder")
    ui_color = "#eeeeee"
    renews_lease = False

    def __init__(self, *, group: str, holder: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.holder = holder

    def execute(self, context: Any) -> None:
        holder = self.holder or default_holder(context)
        why_not = rollout.release_lease(self.platform, self.group, holder)
        if why_not:
            self.log.warning("Lease of group %s not released by %s: %s", self.group, holder, why_not)
            return
        self.log.info("Released group %s", self.group)
