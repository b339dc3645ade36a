"""A group's lease: one rollout at a time changes a group, from any DAG."""

from __future__ import annotations

from typing import Any

from airflow_eas import rollout
from airflow_eas.operators.base import EasBaseOperator, eas_template_fields


def default_holder(context: Any) -> str:
    return f"{context['dag'].dag_id}/{context['run_id']}"


class EasAcquireLeaseOperator(EasBaseOperator):
    """Take a group's lease so that no other rollout (from any DAG) changes the group meanwhile.

    The same holder may take it again (a retried task renews it). When another holder has
    it, the task waits up to ``wait_seconds`` and then fails without retrying.

    :param group: the service group; templated
    :param holder: who holds the lease (default ``<dag_id>/<run_id>``); templated
    :param ttl_seconds: the lease expires after this long unless released or renewed
    :param wait_seconds: how long to wait for another holder's lease (default 0: fail at once)
    :param poll_interval: seconds between attempts while waiting
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "holder")
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        group: str,
        holder: str | None = None,
        ttl_seconds: int = 7200,
        wait_seconds: float = 0,
        poll_interval: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        holder = self.holder or default_holder(context)
        lease = rollout.acquire_lease(
            self.platform,
            self.group,
            holder,
            ttl_seconds=self.ttl_seconds,
            wait_seconds=self.wait_seconds,
            poll_interval=self.poll_interval,
            on_wait=lambda _: self.log.info("Group %s is leased by another rollout; waiting", self.group),
        )
        self.log.info("Leased group %s to %s for %d s", self.group, holder, self.ttl_seconds)
        return lease.to_dict()


class EasReleaseLeaseOperator(EasBaseOperator):
    """Give a group's lease back (a lease held by someone else is left alone).

    :param group: the service group; templated
    :param holder: who holds the lease (default ``<dag_id>/<run_id>``); templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "holder")
    ui_color = "#eeeeee"

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
