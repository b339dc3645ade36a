"""The operators against the in-memory platform: what each step changes, and how it fails."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred

from airflow_eas.errors import NotFound, PlatformUnavailable
from airflow_eas.links import XCOM_KEY
from airflow_eas.operators import (
    EasAcquireLeaseOperator,
    EasBaseOperator,
    EasDeleteServiceOperator,
    EasDeployServiceOperator,
    EasPromoteOperator,
    EasReleaseLeaseOperator,
    EasRollbackOperator,
    EasScaleOperator,
    EasTrafficShiftOperator,
    EasWarmUpOperator,
)
from airflow_eas.platform.base import STOPPED
from airflow_eas.sensors.eas import EasBaseSensor, EasServiceReadySensor
from tests.fakes import FakePlatform
from tests.provider.conftest import task_context

SPEC = {"processor": "sklearn", "model_path": "file:///m/v2/model.joblib", "metadata": {"instance": 1}}


# -- the retry policy --------------------------------------------------------------------------


class _Raises(EasBaseOperator):
    def __init__(self, *, error: Exception, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def execute(self, context: Any) -> None:
        raise self.error

    def execute_complete(self, context: Any, event: Any = None) -> None:
        raise self.error


@pytest.mark.parametrize("method", ["execute", "execute_complete"])
def test_permanent_errors_fail_at_once_transient_ones_retry(method: str) -> None:
    permanent = _Raises(task_id="p", error=NotFound("service x not found"))
    with pytest.raises(AirflowFailException, match="NotFound: service x not found"):
        getattr(permanent, method)(task_context())
    transient = _Raises(task_id="t", error=PlatformUnavailable("down"))
    with pytest.raises(PlatformUnavailable):
        getattr(transient, method)(task_context())


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_operator_and_sensor_gets_the_retry_policy() -> None:
    classes = _subclasses(EasBaseOperator) + _subclasses(EasBaseSensor)
    assert len(classes) > 12
    for cls in classes:
        for name in ("execute", "execute_complete"):
            method = getattr(cls, name, None)
            if method is not None and name in vars(cls):
                assert getattr(method, "_eas_retry_policy", False), f"{cls.__name__}.{name}"


# -- deploy ------------------------------------------------------------------------------------


def test_deploy_goes_to_the_idle_member_and_reports_the_live_one(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=100)
    context = task_context()
    result = EasDeployServiceOperator(task_id="deploy", group="g", spec=SPEC).execute(context)
    assert result["service"] == "g_green"
    assert result["previous"] == "g_blue"
    assert result["group"] == "g"
    assert fake_platform.writes("create") == [("create", "g_green")]
    assert context["ti"].xcom[XCOM_KEY]["service"] == "g_green"


def test_deploy_takes_the_model_path_of_the_triggering_asset_event(fake_platform: FakePlatform) -> None:
    event = SimpleNamespace(extra={"model_path": "file:///m/v9/model.joblib"})
    context = task_context(triggering_asset_events={"asset": [event]})
    op = EasDeployServiceOperator(task_id="deploy", group="g", spec=SPEC, use_asset_event=True)
    assert op.execute(context)["model_path"] == "file:///m/v9/model.joblib"


def test_deploy_with_both_members_live_fails_without_retries(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=50)
    fake_platform.add_member("g_green", "g", weight=50)
    with pytest.raises(AirflowFailException, match="Conflict: group g: both"):
        EasDeployServiceOperator(task_id="deploy", group="g", spec=SPEC).execute(task_context())
    assert fake_platform.calls == []


# -- warm-up -----------------------------------------------------------------------------------


def test_warm_up_reads_the_spec_file_and_fails_past_max_errors(fake_platform: FakePlatform, tmp_path) -> None:
    data = tmp_path / "warmup.jsonl"
    data.write_text('{"instances": [[1]]}\n')
    fake_platform.add_member("g_blue", "g")
    fake_platform.services["g_blue"].spec.warm_up_data_path = str(data)
    op = EasWarmUpOperator(task_id="warm", service="g_blue", count=3)
    assert op.execute(task_context())["requests"] == 3
    fake_platform.answers["g_blue"] = lambda _: (500, b"model not loaded")
    with pytest.raises(AirflowFailException, match="3 of 3 requests failed.*model not loaded"):
        op.execute(task_context())


def test_warm_up_without_data_is_skipped(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g")
    result = EasWarmUpOperator(task_id="warm", service="g_blue").execute(task_context())
    assert result["requests"] == 0
    assert fake_platform.invoked == []


# -- traffic -----------------------------------------------------------------------------------


def test_traffic_shift_sets_the_weights(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=100)
    fake_platform.add_member("g_green", "g")
    op = EasTrafficShiftOperator(task_id="shift", group="g", service="g_green", weight="25")
    assert op.execute(task_context()) == {"g_green": 25, "g_blue": 75}
    assert fake_platform.describe_group("g").weight_of("g_blue") == 75
    with pytest.raises(AirflowFailException, match="between 0 and 100"):
        EasTrafficShiftOperator(task_id="bad", group="g", service="g_green", weight=150).execute(task_context())


def test_promote_scales_the_old_member_down_after_the_delay(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=90)
    fake_platform.add_member("g_green", "g", weight=10)
    op = EasPromoteOperator(
        task_id="promote", group="g", service="g_green", scale_down_delay_seconds=0, scale_down="zero"
    )
    assert op.execute(task_context()) == {"service": "g_green", "scaled_down": ["g_blue"]}
    assert fake_platform.describe("g_blue").instances == 0


def test_promote_defers_the_delay_and_leaves_a_rolled_back_group_alone(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", weight=0)
    fake_platform.add_member("g_green", "g", weight=100)
    op = EasPromoteOperator(
        task_id="promote", group="g", service="g_green", scale_down_delay_seconds=600, deferrable=True
    )
    with pytest.raises(TaskDeferred):
        op.execute(task_context())
    fake_platform.set_traffic("g", {"g_blue": 100, "g_green": 0})  # rolled back meanwhile
    assert op.execute_complete(task_context(), None)["scaled_down"] == []
    assert fake_platform.writes("stop", "scale") == []


def test_rollback_restarts_the_stopped_previous_member(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("g_blue", "g", instances=0, status=STOPPED)
    fake_platform.add_member("g_green", "g", weight=100)
    op = EasRollbackOperator(task_id="rollback", group="g", service="g_green", previous="g_blue")
    assert op.execute(task_context())["weights"] == {"g_green": 0, "g_blue": 100}
    assert fake_platform.describe("g_blue").ready
    assert fake_platform.describe("g_green").status == STOPPED


def test_rollback_skips_when_nothing_was_deployed(fake_platform: FakePlatform) -> None:
    with pytest.raises(AirflowSkipException):
        EasRollbackOperator(task_id="rollback", group="g", service="").execute(task_context())


# -- scale, delete -----------------------------------------------------------------------------


def test_scale_sets_the_instance_count(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("svc", "g")
    result = EasScaleOperator(task_id="scale", service="svc", instances="3").execute(task_context())
    assert result["instances"] == 3
    assert fake_platform.describe("svc").instances == 3
    with pytest.raises(AirflowFailException, match="NotFound"):
        EasScaleOperator(task_id="scale", service="missing", instances=1).execute(task_context())


def test_scale_retries_when_the_platform_is_down(fake_platform: FakePlatform, monkeypatch) -> None:
    def down(*_: Any) -> None:
        raise PlatformUnavailable("cannot reach eas server")

    monkeypatch.setattr(fake_platform, "scale", down)
    with pytest.raises(PlatformUnavailable):
        EasScaleOperator(task_id="scale", service="svc", instances=1).execute(task_context())


def test_delete_ignores_a_missing_service_unless_told(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("svc", "g")
    EasDeleteServiceOperator(task_id="delete", service="svc").execute(task_context())
    assert "svc" not in fake_platform.services
    EasDeleteServiceOperator(task_id="again", service="svc").execute(task_context())
    with pytest.raises(AirflowFailException, match="NotFound"):
        EasDeleteServiceOperator(task_id="strict", service="svc", ignore_missing=False).execute(task_context())


# -- leases ------------------------------------------------------------------------------------


def test_lease_held_by_another_rollout_fails_without_retries(fake_platform: FakePlatform) -> None:
    fake_platform.acquire_lease("g", "other/run", 60)
    op = EasAcquireLeaseOperator(task_id="lease", group="g", wait_seconds=0.2, poll_interval=0.1)
    with pytest.raises(AirflowFailException, match="Conflict: group g is being changed by another rollout"):
        op.execute(task_context())
    EasReleaseLeaseOperator(task_id="release", group="g").execute(task_context())  # not ours: left alone
    assert fake_platform.leases["g"].holder == "other/run"


def test_lease_defaults_to_the_run_as_holder(fake_platform: FakePlatform) -> None:
    lease = EasAcquireLeaseOperator(task_id="lease", group="g").execute(task_context())
    assert lease["holder"] == "dag/run"
    EasReleaseLeaseOperator(task_id="release", group="g").execute(task_context())
    assert fake_platform.leases == {}


# -- sensors -----------------------------------------------------------------------------------


def test_ready_sensor_waits_for_the_instances(fake_platform: FakePlatform) -> None:
    fake_platform.add_member("svc", "g", ready=False)
    sensor = EasServiceReadySensor(task_id="ready", service="svc")
    assert sensor.poke(task_context()) is False
    fake_platform.services["svc"].ready = True
    assert sensor.poke(task_context())


def test_ready_sensor_resumed_by_a_trigger_fails_or_retries_by_the_event(fake_platform: FakePlatform) -> None:
    sensor = EasServiceReadySensor(task_id="ready", service="svc")
    with pytest.raises(AirflowFailException, match="failed: svc is Failed"):
        sensor.execute_complete(task_context(), {"status": "failed", "message": "svc is Failed"})
    with pytest.raises(AirflowException, match="error: unreachable") as caught:
        sensor.execute_complete(task_context(), {"status": "error", "message": "unreachable"})
    assert not isinstance(caught.value, AirflowFailException)  # a platform error is worth a retry
