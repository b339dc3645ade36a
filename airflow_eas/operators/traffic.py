"""Move a group's traffic: canary steps, bake time, promotion, rollback; a first release without a canary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_eas import rollout
from airflow_eas.lineage import emit_release_event, release_lineage
from airflow_eas.operators.base import (
    EasBaseOperator,
    EasHookMixin,
    default_deferrable,
    default_holder,
    eas_template_fields,
    wait_or_defer,
)


class EasReleaseGateOperator(EasHookMixin, BaseBranchOperator):
    """Choose the canary, or a release without one when nothing in the group serves traffic.

    A first release (a new group, or every member with traffic stopped or Failed) has nothing
    to protect and nothing to compare with: the run follows ``first_release_task_id`` (which
    gives the new member all traffic) instead of ``canary_task_id``.

    :param group: the service group; templated
    :param service: the new member; templated
    :param canary_task_id: the first task of the canary
    :param first_release_task_id: the task that releases without a canary
    """

    template_fields = eas_template_fields("group", "service")
    ui_color = "#e0e0ff"

    def __init__(
        self,
        *,
        group: str,
        service: str,
        canary_task_id: str,
        first_release_task_id: str,
        eas_conn_id: str = "eas_default",
        lease_group: str | None = None,
        lease_ttl_seconds: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eas_conn_id = eas_conn_id
        self.lease_group = lease_group
        self.lease_ttl_seconds = lease_ttl_seconds
        self.group = group
        self.service = service
        self.canary_task_id = canary_task_id
        self.first_release_task_id = first_release_task_id

    def execute(self, context: Any) -> Any:
        return super().execute(context)

    def choose_branch(self, context: Any) -> str | Iterable[str]:
        reason = rollout.first_release_reason(self.platform, self.group, self.service)
        if reason is None:
            self.log.info("Group %s has a serving member: canary", self.group)
            return self.canary_task_id
        self.log.info("No canary: %s", reason)
        context["ti"].xcom_push(key="first_release", value=reason)
        return self.first_release_task_id


class EasFirstReleaseOperator(EasBaseOperator):
    """Give a group's only serving candidate all traffic at once, saying why no canary runs.

    :param group: the service group; templated
    :param service: the new member; templated
    :param reason: why there is no canary (default: computed again); templated
    """

    template_fields = eas_template_fields("group", "service", "reason")
    ui_color = "#d9f2d9"

    def __init__(self, *, group: str, service: str, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.service = service
        self.reason = reason

    def execute(self, context: Any) -> dict[str, int]:
        reason = self.reason or rollout.first_release_reason(self.platform, self.group, self.service)
        if not reason:
            raise AirflowFailException(f"group {self.group} has a serving member: a release needs its canary")
        weights = rollout.release_without_canary(self.platform, self.group, self.service, reason)
        self.log.info("%s gets all traffic without a canary: %s", self.service, reason)
        return weights


class EasTrafficShiftOperator(EasBaseOperator):
    """Give a group member ``weight`` percent of the group's traffic; the rest stays with the others.

    The remainder is shared by ``previous`` (or, if not given, by the members that serve
    traffic now, in proportion to their weights). A member alone in its group (the first
    deploy of a group) gets all traffic. Returns (XCom) the weights set.

    :param group: the service group; templated
    :param service: the member to shift traffic to; templated
    :param weight: its new weight, 0-100; templated
    :param previous: the member that keeps the remainder; templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "service", "weight", "previous")
    ui_color = "#d9f2d9"

    def __init__(
        self, *, group: str, service: str, weight: int | str, previous: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.service = service
        self.weight = weight
        self.previous = previous

    def execute(self, context: Any) -> dict[str, int]:
        platform = self.platform
        info = rollout.describe_group_or_empty(platform, self.group)
        weights = rollout.shift_weights(info, self.service, int(self.weight), self.previous or None)
        platform.set_traffic(self.group, weights)
        self.log.info("Group %s traffic: %s", self.group, rollout.format_weights(weights))
        return weights


class EasBakeOperator(EasBaseOperator):
    """Let traffic flow for a while (a canary step's bake time) before its analysis.

    Deferred by default, so no worker slot is held while baking.

    :param seconds: how long to wait; templated
    :param deferrable: wait in the triggerer (default) instead of sleeping in the worker
    """

    template_fields = eas_template_fields("seconds")
    ui_color = "#fdf6e3"

    def __init__(self, *, seconds: int | str, deferrable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def execute(self, context: Any) -> None:
        seconds = float(self.seconds)
        if seconds <= 0:
            return
        self.log.info("Baking for %.0f s", seconds)
        wait_or_defer(self, seconds, deferrable=self.deferrable, method_name="execute_complete", context=context)

    def execute_complete(self, context: Any, event: Any = None) -> None:
        self.log.info("Bake time over")


class EasRolloutFailedOperator(EasBaseOperator):
    """Fails the run after a rollback, so a rolled-back release never ends ``success``.

    Wire it with ``trigger_rule=ONE_FAILED`` below the rollout steps.

    :param group: the service group (for the message); templated
    """

    template_fields = eas_template_fields("group")
    ui_color = "#ffb3b3"
    renews_lease = False

    def __init__(self, *, group: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group

    def execute(self, context: Any) -> None:
        reverted = rollout.platform_reverted(self.platform, self.group, default_holder(context))
        if reverted and not reverted.taken_by_another:
            raise AirflowFailException(f"the rollout of group {self.group} failed: {reverted.reason}")
        raise AirflowFailException(
            f"the rollout of group {self.group} failed; its traffic went back to the previous member "
            "(see the failed task and the rollback task)"
        )


class EasPromoteOperator(EasBaseOperator):
    """Give ``service`` all of its group's traffic; scale the old members down after a delay.

    Until then the old members keep running, so a rollback is one weight change. The delay
    is spent deferred (no worker slot). If the group no longer routes everything to
    ``service`` when the delay ends (someone rolled back), nothing is scaled down.

    :param group: the service group; templated
    :param service: the member to promote; templated
    :param scale_down_delay_seconds: how long the old members stay up; templated
    :param scale_down: ``"stop"`` the old members (default), ``"zero"`` (scale to 0 instances)
        or ``"keep"`` them running
    :param deferrable: spend the delay in the triggerer instead of the worker (default:
        ``[operators] default_deferrable``)
    :param eas_conn_id: the Airflow connection of the platform

    With ``outlets=[Asset("eas://<group>")]`` (the rollout DAG sets it) the asset event's extra
    carries ``service``, ``version`` and ``model_path``, so downstream DAGs can run on
    "new model live"; with the OpenLineage provider installed, the task reports the model path
    as input and the group as output.
    """

    template_fields = eas_template_fields("group", "service", "scale_down_delay_seconds")
    ui_color = "#a8e6a8"

    def __init__(
        self,
        *,
        group: str,
        service: str,
        scale_down_delay_seconds: int | str = 300,
        scale_down: str = "stop",
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.group = group
        self.service = service
        self.scale_down_delay_seconds = scale_down_delay_seconds
        self.scale_down = rollout.check_scale_down(scale_down)

    def execute(self, context: Any) -> dict[str, Any]:
        lease = self.lease_ref(context)
        if lease:  # from now on the new member is the one to fall back to
            rollout.heartbeat(self.platform, lease, stable=self.service)
        old = rollout.promote(self.platform, self.group, self.service)
        self.log.info("Promoted %s: all of group %s's traffic; old members %s", self.service, self.group, old)
        self._release = emit_release_event(context, self, self.platform.describe(self.service))
        delay = int(self.scale_down_delay_seconds)
        if old and self.scale_down != "keep" and delay > 0:
            self.log.info("Keeping %s up for %d s for a fast rollback", old, delay)
            wait_or_defer(self, delay, deferrable=self.deferrable, method_name="execute_complete", context=context)
        return self.execute_complete(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return release_lineage(self.group, getattr(self, "_release", None) or {})

    def execute_complete(self, context: Any, event: Any = None, **_: Any) -> dict[str, Any]:
        result = rollout.scale_down_old_members(self.platform, self.group, self.service, self.scale_down)
        if result.skipped_because:
            self.log.warning("%s; leaving the old members up", result.skipped_because)
        elif result.scaled_down:
            self.log.info("Scaled down %s (%s)", result.scaled_down, self.scale_down)
        return {"service": self.service, "scaled_down": result.scaled_down}


class EasRollbackOperator(EasBaseOperator):
    """Send a group's traffic back to the previous live member and stop the new one.

    Skips when there is nothing to roll back (``service`` empty: nothing was deployed).
    A ``previous`` member that was stopped is started again first. Without a previous
    member (a group's first deploy) the new member just loses its traffic.

    :param group: the service group; templated
    :param service: the member to take traffic from; templated
    :param previous: the member to give all traffic back to; templated
    :param stop_service: stop ``service`` afterwards (default True)
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "service", "previous")
    ui_color = "#ffd6d6"
    renews_lease = False  # it undoes a failed run: a lapsed or revoked lease must not stop it

    def __init__(
        self,
        *,
        group: str,
        service: str | None,
        previous: str | None = None,
        stop_service: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.service = service
        self.previous = previous
        self.stop_service = stop_service

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.service:
            raise AirflowSkipException("nothing was deployed in this run: nothing to roll back")
        platform = self.platform
        reverted = rollout.platform_reverted(platform, self.group, default_holder(context))
        if reverted:
            # The platform already moved the traffic back: its weights stand. The candidate (now without
            # traffic) is stopped unless another rollout owns the group by now (it may be deploying there).
            self.log.warning("Not changing group %s's traffic: %s", self.group, reverted.reason)
            if self.stop_service and not reverted.taken_by_another:
                rollout.stop_quietly(platform, self.service)
            return {"service": self.service, "previous": self.previous or None, "weights": {},
                    "skipped": reverted.reason}
        previous = self.previous or None
        weights = rollout.rollback(
            platform,
            self.group,
            self.service,
            previous,
            stop_service=self.stop_service,
            on_restart=lambda name, status: self.log.warning(
                "%s is %s: starting it again before it takes traffic", name, status
            ),
        )
        self.log.warning("Rolled back group %s: %s", self.group, rollout.format_weights(weights))
        return {"service": self.service, "previous": previous, "weights": weights}
