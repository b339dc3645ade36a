"""Rollout safety in the operators, against the in-memory platform: heartbeats, a platform that
reverted by itself, first releases, the analysis sensor, waiting deploys, links, the release asset."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_eas.errors import NotFound
from airflow_eas.links import XCOM_KEY, EasServiceConsoleLink, EasServiceEndpointLink
from airflow_eas.operators import (
    EasAcquireLeaseOperator,
    EasBakeOperator,
    EasDeployServiceOperator,
    EasFirstReleaseOperator,
    EasPromoteOperator,
    EasReleaseGateOperator,
    EasRollbackOperator,
    EasRolloutFailedOperator,
    EasTrafficShiftOperator,
)
from airflow_eas.platform.base import FAILED, STOPPED, Metrics
from airflow_eas.sensors.eas import EasMetricsSensor, EasServiceReadySensor
from tests.fakes import FakePlatform
from tests.provider.conftest import task_context

LEASED = {"lease_group": "g", "lease_ttl_seconds": 60}
SPEC = {"processor": "sklearn", "model_path": "file:///m/v2/model.joblib", "metadata": {"instance": 1}}


def canary(platform: FakePlatform, green_weight: int = 50) -> None:
    """g_blue live, g_green the candidate with some traffic, the lease taken by run dag/run."""
    platform.add_member("g_blue", "g", weight=100 - green_weight)
    platform.add_member("g_green", "g", weight=green_weight)
    platform.leases.clear()
    platform.acquire_lease("g", "dag/run", 60, stable="g_blue")


# -- the lease: taken with the stable member, renewed by every task -----------------------------


def test_acquire_names_the_stable_member_and_the_guard(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=100)
    fake_platform.add_member("g_green", "g")
    guard = {"window_seconds": 5, "max_error_rate": 0.02, "min_requests": 10}
    lease = EasAcquireLeaseOperator(task_id="lease", group="g", ttl_seconds="120", guard=guard).execute(
        task_context()
    )
    assert lease["stable"] == "g_blue"
    assert lease["guard"] == guard
    assert fake_platform.leases["g"].expires_at > 0


def test_every_task_renews_the_lease(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    EasTrafficShiftOperator(task_id="shift", group="g", service="g_green", weight=50, **LEASED).execute(
        task_context()
    )
    assert fake_platform.writes("renew_lease") == [("renew_lease", "g", "dag/run", None)]


def test_a_platform_revert_fails_the_next_task_with_the_reason(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    fake_platform.revoke("g", "the guard saw g_green fail: error rate 12/20 = 60.0% over the last 10 s exceeds 5.0%")
    shift = EasTrafficShiftOperator(task_id="shift", group="g", service="g_green", weight=100, **LEASED)
    with pytest.raises(AirflowFailException, match="the platform's guard reverted it: the guard saw g_green fail"):
        shift.execute(task_context())
    assert fake_platform.writes("set_traffic") == []  # the task did nothing after the revert
    # The rollback does not fight the platform, and the run's failure says why.
    rolled = EasRollbackOperator(task_id="rollback", group="g", service="g_green", previous="g_blue").execute(
        task_context()
    )
    assert "the platform's guard reverted it" in rolled["skipped"]
    assert fake_platform.writes("set_traffic", "stop") == [("stop", "g_green")]  # weights as the platform set
    with pytest.raises(AirflowFailException, match="failed: the platform's guard reverted it: the guard saw"):
        EasRolloutFailedOperator(task_id="rollout_failed", group="g").execute(task_context())


def test_rollback_leaves_a_group_another_rollout_took_alone(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    fake_platform.revoke("g", "the lease of dag/run lapsed")
    fake_platform.acquire_lease("g", "next/run", 60, stable="g_blue")
    EasRollbackOperator(task_id="rollback", group="g", service="g_green", previous="g_blue").execute(task_context())
    assert fake_platform.writes("set_traffic", "stop") == []


def test_bake_in_the_worker_keeps_renewing(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    EasBakeOperator(task_id="bake", seconds=2.5, deferrable=False, lease_group="g", lease_ttl_seconds=4).execute(
        task_context()
    )
    assert len(fake_platform.writes("renew_lease")) >= 3  # at the start, then every TTL/4 (1 s)


def test_deferred_bake_hands_the_lease_to_its_trigger(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    bake = EasBakeOperator(task_id="bake", seconds=600, deferrable=True, **LEASED)
    with pytest.raises(TaskDeferred) as deferred:
        bake.execute(task_context())
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["lease"] == {"group": "g", "holder": "dag/run", "ttl_seconds": 60}


def test_promote_makes_the_new_member_the_stable_one_and_updates_the_release_asset(
    fake_platform: FakePlatform,
) -> None:
    from airflow.sdk import Asset

    canary(fake_platform, green_weight=100)
    asset = Asset("eas://g")
    extra: dict[str, Any] = {}
    context = task_context(outlet_events={asset: SimpleNamespace(extra=extra)})
    op = EasPromoteOperator(
        task_id="promote", group="g", service="g_green", scale_down_delay_seconds=0, outlets=[asset], **LEASED
    )
    op.execute(context)
    assert fake_platform.leases["g"].stable == "g_green"
    assert extra == {"group": "g", "service": "g_green", "version": 1, "model_path": "file:///m"}
    facets = op.get_openlineage_facets_on_complete(None)  # the OpenLineage provider (dev extra)
    assert [(d.namespace, d.name) for d in facets.inputs] == [("file", "/m")]
    assert [(d.namespace, d.name) for d in facets.outputs] == [("eas", "groups/g")]


# -- first release -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blue", "first"),
    [
        (None, True),  # a new group
        ({"weight": 100, "instances": 0, "status": STOPPED}, True),  # the live member was stopped
        ({"weight": 100, "status": FAILED}, True),
        ({"weight": 100}, False),  # something serves: canary
    ],
)
def test_release_gate_picks_the_canary_only_when_something_serves(
    fake_platform: FakePlatform, blue: dict | None, first: bool
) -> None:
    if blue is not None:
        fake_platform.add_member("g_blue", "g", **blue)
    fake_platform.add_member("g_green", "g")
    gate = EasReleaseGateOperator(
        task_id="gate", group="g", service="g_green", canary_task_id="shift_to_10", first_release_task_id="first"
    )
    context = task_context()
    assert gate.choose_branch(context) == ("first" if first else "shift_to_10")
    assert ("first_release" in context["ti"].xcom) is first


def test_first_release_gives_all_traffic_and_says_why(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=100, instances=0, status=STOPPED)
    fake_platform.add_member("g_green", "g")
    weights = EasFirstReleaseOperator(task_id="first", group="g", service="g_green").execute(task_context())
    assert weights == {"g_blue": 0, "g_green": 100}
    [event] = fake_platform.describe_group("g").events
    assert "g_green got all traffic without a canary: first release into group g" in event.message
    fake_platform.start("g_blue")
    fake_platform.set_traffic("g", {"g_blue": 100, "g_green": 0})
    with pytest.raises(AirflowFailException, match="needs its canary"):
        EasFirstReleaseOperator(task_id="first", group="g", service="g_green").execute(task_context())


# -- the analysis sensor -----------------------------------------------------------------------


class StateStore:
    """Airflow's task state store, as a reschedule-mode sensor sees it across pokes."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def test_analysis_sensor_measures_count_times_and_logs_each(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    fake_platform.metric_values["g_green"] = Metrics("g_green", 10, 100, 0, 3.0, 5.0, 8.0)
    sensor = EasMetricsSensor(
        task_id="analysis", service="g_green", analysis={"count": 3, "min_requests": 10}, interval_seconds=0.01
    )
    store = StateStore()
    results = [sensor.poke(task_context(task_state_store=store)) for _ in range(3)]
    assert results[:2] == [False, False]
    done = results[2]
    assert done.is_done
    assert [m["result"] for m in done.xcom_value["measurements"]] == ["Successful"] * 3
    assert "3 of 3 measurements passed" in done.xcom_value["message"]


def test_analysis_sensor_fails_at_once_on_a_failed_measurement(fake_platform: FakePlatform) -> None:
    canary(fake_platform)
    fake_platform.metric_values["g_green"] = Metrics("g_green", 10, 100, 30, 3.0, 5.0, 8.0)
    sensor = EasMetricsSensor(task_id="analysis", service="g_green", analysis={"count": 5, "min_requests": 10})
    with pytest.raises(AirflowFailException, match=r"Failed: 1 of 1 measurements failed .*error rate 30/100"):
        sensor.poke(task_context(task_state_store=StateStore()))


def test_analysis_thresholds_are_templated_and_checked_when_rendered(fake_platform: FakePlatform) -> None:
    sensor = EasMetricsSensor(task_id="analysis", service="g_green", analysis={"max_error_rate": "{{ params.r }}"})
    assert "analysis" in sensor.template_fields
    sensor.analysis = {"max_error_rate": "2"}  # what a bad param renders to
    with pytest.raises(AirflowFailException, match="max_error_rate"):
        sensor.execute(task_context())


def test_reschedule_mode_counts_consecutive_errors_across_pokes(fake_platform: FakePlatform) -> None:
    store = StateStore()
    for attempt in (1, 2):
        # reschedule mode: a new sensor object (a new process) at every poke
        sensor = EasServiceReadySensor(task_id="ready", service="missing", mode="reschedule", max_consecutive_errors=3)
        sensor.check = lambda: (_ for _ in ()).throw(NotFound("gone"))  # type: ignore[method-assign]
        assert sensor.poke(task_context(task_state_store=store)) is False, attempt
    sensor = EasServiceReadySensor(task_id="ready", service="missing", mode="reschedule", max_consecutive_errors=3)
    sensor.check = lambda: (_ for _ in ()).throw(NotFound("gone"))  # type: ignore[method-assign]
    with pytest.raises(Exception, match="3 failed checks in a row: gone"):
        sensor.poke(task_context(task_state_store=store))


def test_deferrable_defaults_to_the_airflow_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert EasBakeOperator(task_id="b", seconds=1).deferrable
    assert EasPromoteOperator(task_id="p", group="g", service="s").deferrable
    assert EasServiceReadySensor(task_id="r", service="s").deferrable
    assert EasDeployServiceOperator(task_id="d", spec=SPEC, group="g").deferrable
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert not EasBakeOperator(task_id="b", seconds=1).deferrable
    assert not EasMetricsSensor(task_id="m", service="s").deferrable


# -- deploy: waiting, links --------------------------------------------------------------------


def test_deploy_waits_until_running_or_fails_with_reason_and_logs(fake_platform: FakePlatform, monkeypatch) -> None:
    fake_platform.add_member("g_blue", "g", weight=100)
    op = EasDeployServiceOperator(task_id="deploy", group="g", spec=SPEC, deferrable=False, check_interval=0.01)
    assert op.execute(task_context())["status"] == "Running"

    fake_platform.set_traffic("g", {"g_blue": 0})
    fake_platform.set_traffic("g", {"g_green": 100})

    def broken(spec):  # the new version cannot start
        info = FakePlatform.deploy(fake_platform, spec)
        fake_platform.services[spec.name].status = FAILED
        return info

    monkeypatch.setattr(fake_platform, "deploy", broken)
    with pytest.raises(AirflowFailException, match=r"g_blue failed to start: .*\nlast 20 log lines:\ng_blue: no logs"):
        op.execute(task_context())


def test_deploy_defers_the_wait(fake_platform: FakePlatform) -> None:
    op = EasDeployServiceOperator(task_id="deploy", group="g", spec=SPEC, deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred):
        op.execute(context)
    assert context["ti"].xcom["eas_deploy"]["service"] == "g_blue"


def test_links_open_the_console_page_never_the_post_only_endpoint(fake_platform: FakePlatform, monkeypatch) -> None:
    from airflow_eas.hooks.eas import EasHook

    monkeypatch.setattr(EasHook, "endpoint", property(lambda self: "http://eas:8600"))
    monkeypatch.setattr(EasHook, "extras", property(lambda self: {}))
    op = EasDeployServiceOperator(task_id="deploy", group="g", spec=SPEC, wait_for_completion=False)
    context = task_context()
    op.execute(context)
    parts = context["ti"].xcom[XCOM_KEY]
    assert EasServiceEndpointLink().format_link(**parts) == "http://eas:8600/console/services/g_blue"
    assert EasServiceConsoleLink().format_link(**parts) == "/eas/services/g_blue?conn_id=eas_default"
    assert EasServiceEndpointLink().format_link() == ""  # a link never fails a page
