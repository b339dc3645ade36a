"""Rollouts end to end: real Airflow (SQLite, dag.test()), real eas server + HAProxy, client traffic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pendulum
import pytest

from airflow_eas.demo import TrafficDriver
from airflow_eas.errors import Conflict
from airflow_eas.spec import parse_spec
from tests.conftest import wait_until
from tests.plans import echo_service, rollout_plan
from tests.provider.conftest import run_plan, task_context, task_start, task_states

pytestmark = pytest.mark.airflow


def seed_group(client: Any, group: str) -> str:
    """Version 1 of ``group`` as ``<group>_blue`` with all traffic (what an earlier release left)."""
    spec = {**echo_service(APP_VERSION="1"), "name": f"{group}_blue"}
    spec["metadata"] = {"instance": 1, "group": group}
    client.create(parse_spec(spec))
    wait_until(lambda: client.describe(f"{group}_blue").ready, 30, "version 1 ready")
    client.set_traffic(group, {f"{group}_blue": 100})
    return f"{group}_blue"


@pytest.fixture
def traffic_to(eas_conn: Any) -> Iterator[Callable[[str], TrafficDriver]]:
    """Starts client traffic to a group; every driver is stopped when the test ends, whatever happened."""
    drivers: list[TrafficDriver] = []

    def start(group: str, rps: float = 30) -> TrafficDriver:
        token = eas_conn.client.describe_group(group).token
        url = f"{eas_conn.gateway}/api/predict/{group}"
        drivers.append(TrafficDriver(url, token, b'{"instances": [[1, 2]]}', rps=rps).start())
        return drivers[-1]

    try:
        yield start
    finally:
        for driver in drivers:
            driver.stop()


@pytest.fixture
def foreign_lease(eas_conn: Any) -> Iterator[Callable[[str], str]]:
    """Leases a group to another rollout; released when the test ends."""
    held: list[str] = []

    def take(group: str) -> str:
        eas_conn.client.acquire_lease(group, "other_dag/run_1", 120)
        held.append(group)
        return "other_dag/run_1"

    try:
        yield take
    finally:
        for group in held:
            eas_conn.client.release_lease(group, "other_dag/run_1")


def weights(client: Any, group: str) -> dict[str, int]:
    return {m.service: m.weight for m in client.describe_group(group).members}


def test_good_version_is_promoted_without_client_errors(eas_conn, airflow_db, traffic_to) -> None:
    client, group = eas_conn.client, "good"
    seed_group(client, group)
    traffic = traffic_to(group)
    time.sleep(1)
    plan = rollout_plan(
        "good_release",
        group,
        service=echo_service(APP_VERSION="{{ params.version }}", BIZDATE="{{ bizdate }}", CYCTIME="{{ cyctime }}"),
        schedule={"cron": "0 2 * * *", "timezone": "Asia/Shanghai", "start_date": "2026-11-01"},
    )
    # The 2026-11-25 02:00 (Shanghai) run: logical date 2026-11-24 18:00 UTC.
    run = run_plan(plan, {"version": "2"}, logical_date=pendulum.datetime(2026, 11, 24, 18, tz="UTC"))
    time.sleep(1)
    traffic.stop()

    states = task_states(run)
    assert run.state == "success", states
    assert states["rollback"] == "skipped"
    assert states["promote"] == "success"
    assert weights(client, group) == {"good_blue": 0, "good_green": 100}
    assert traffic.failures_at == [], "client errors while the rollout ran"
    assert traffic.answers["version 2"] > 0
    assert traffic.answers["version 1"] > 0
    env = {e["name"]: e["value"] for e in client.describe("good_green").spec["containers"][0]["env"]}
    assert env == {"APP_VERSION": "2", "BIZDATE": "20261124", "CYCTIME": "20261125020000"}
    # The old member is scaled down after the delay; the lease is free again.
    wait_until(lambda: client.describe("good_blue").status == "Stopped", 20, "old member stopped")
    client.acquire_lease(group, "someone-else", 5)
    client.release_lease(group, "someone-else")
    assert traffic.errors == 0


def test_bad_version_is_rolled_back_and_the_run_fails(eas_conn, airflow_db, traffic_to) -> None:
    client, group = eas_conn.client, "bad"
    seed_group(client, group)
    traffic = traffic_to(group)
    time.sleep(1)
    # guard off: this is the Airflow analysis path (the platform guard has its own test below)
    plan = rollout_plan(
        "bad_release", group, service=echo_service(APP_VERSION="2", FAIL_RATE="0.2"), guard=False
    )
    run = run_plan(plan)
    traffic.stop()

    states = task_states(run)
    assert run.state == "failed", states
    # 20% of answers are 5xx: the warm-up or the first analysis catches it, whichever sees it first
    assert states["warm_up"] == "failed" or states["analysis_50"] == "failed", states
    assert states["rollback"] == "success"
    assert states["rollout_failed"] == "failed"
    assert states["promote"] == "upstream_failed"
    assert states["shift_to_100"] == "upstream_failed"
    assert weights(client, group) == {"bad_blue": 100, "bad_green": 0}
    wait_until(lambda: client.describe("bad_green").status == "Stopped", 20, "bad member stopped")
    assert traffic.answers["version 1"] > 0


def test_version_that_cannot_start_never_receives_traffic(eas_conn, airflow_db, traffic_to) -> None:
    client, group = eas_conn.client, "broken"
    seed_group(client, group)
    traffic = traffic_to(group)
    plan = rollout_plan("broken_release", group, service=echo_service(APP_VERSION="2", EXIT_CODE="3"))
    run = run_plan(plan)
    traffic.stop()

    states = task_states(run)
    assert run.state == "failed", states
    assert states["wait_ready"] == "failed"
    assert states["shift_to_50"] == "upstream_failed"
    assert weights(client, group) == {"broken_blue": 100, "broken_green": 0}
    assert "version 2" not in traffic.answers
    assert traffic.failures_at == []
    assert set(traffic.answers) == {"version 1"}


def xcom(run, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key).one()
        return XComModel.deserialize_value(row)


def test_first_release_into_an_empty_group_ends_success_without_a_canary(eas_conn, airflow_db) -> None:
    """The issue's reproduction: canary 20/50/100, min_requests 10, no traffic anywhere."""
    client, group = eas_conn.client, "fresh"
    plan = rollout_plan("fresh_release", group, steps=[20, 50, 100], bake_seconds=30)
    plan["analysis"].update(min_requests=10, timeout_seconds=600)
    started = time.monotonic()
    run = run_plan(plan, {"version": "1"})
    states = task_states(run)
    assert run.state == "success", states
    assert time.monotonic() - started < 120  # no bake, no analysis timeout
    assert states["first_release"] == "success"
    assert states["promote"] == "success"
    assert all(states[t] == "skipped" for t in states if t.startswith(("shift_to", "bake_", "analysis_"))), states
    assert weights(client, group) == {"fresh_blue": 100}
    why = xcom(run, "release_gate", "first_release")
    assert "first release into group fresh" in why
    events = [e.message for e in client.describe_group(group).events]
    assert any("fresh_blue got all traffic without a canary: first release" in m for m in events), events
    assert client.get_lease(group) is None  # released at once


def test_warm_up_replays_an_asset_registered_on_the_platform(eas_conn, airflow_db, tmp_path) -> None:
    """`warm_up_data_path: "asset:NAME"`: the rollout's warm-up task resolves it through the platform, as the
    model server does (it used to fail: it read "asset:NAME" as a path)."""
    client, group = eas_conn.client, "assetwarm"
    warm = tmp_path / "warm.jsonl"
    warm.write_text('{"instances": [[1, 2]]}\n{"instances": [[3, 4]]}\n{"instances": [[5, 6]]}\n')
    client._call("POST", "/api/v2/assets", json={"name": "assetwarm_data", "type": "data", "uri": f"file://{warm}"})
    service = {**echo_service(APP_VERSION="1"), "warm_up_data_path": "asset:assetwarm_data"}
    plan = rollout_plan("asset_warm_release", group, service=service, warmup={"count": 2})
    run = run_plan(plan, {"version": "1"})
    states = task_states(run)
    assert run.state == "success", states
    warmed = xcom(run, "warm_up")
    assert (warmed["requests"], warmed["errors"]) == (6, 0)  # 3 bodies of the asset's file, twice
    assert client.describe("assetwarm_blue").spec["warm_up_data_path"] == "asset:assetwarm_data"


def test_guard_cuts_off_a_failing_canary_during_the_bake_and_the_run_fails(
    eas_conn, airflow_db, traffic_to
) -> None:
    client, group = eas_conn.client, "guardrun"
    seed_group(client, group)
    traffic = traffic_to(group)
    plan = rollout_plan(
        "guard_release",
        group,
        service=echo_service(APP_VERSION="2", FAIL_RATE="0.5"),
        warmup={"data": [{"instances": [[1, 2]]}], "count": 1, "max_errors": 5},
        bake_seconds=40,  # the analysis is far away: only the platform's guard can cut the canary off
        lease_ttl_seconds=20,
        guard={"window_seconds": 5, "min_requests": 10},
    )
    run = run_plan(plan)
    traffic.stop()

    states = task_states(run)
    assert run.state == "failed", states
    assert states["bake_50"] == "failed", states  # its heartbeat learned the platform reverted
    assert states["analysis_50"] == "upstream_failed"
    assert weights(client, group) == {"guardrun_blue": 100, "guardrun_green": 0}
    guard_events = [e for e in client.describe_group(group).events if "the guard saw guardrun_green fail" in e.message]
    assert guard_events, client.describe_group(group).events
    shifted = task_start(run, "bake_50")
    assert guard_events[0].time - shifted < 15, "the canary kept its traffic too long"
    rolled = xcom(run, "rollback")
    assert "the platform's guard reverted it" in rolled["skipped"]  # the rollback left the weights alone
    wait_until(lambda: client.describe("guardrun_green").status == "Stopped", 20, "the canary stopped")
    assert client.get_lease(group) is None


def test_the_lease_blocks_a_second_rollout(eas_conn, airflow_db, foreign_lease) -> None:
    client, group = eas_conn.client, "leased"
    seed_group(client, group)
    foreign_lease(group)
    run = run_plan(rollout_plan("leased_release", group))
    states = task_states(run)
    assert run.state == "failed", states
    assert states["acquire_lease"] == "failed"
    assert states["deploy"] == "upstream_failed"
    # Nothing of this run touched the group: no rollback, and the lease is not ours to release.
    assert states["rollback"] in ("skipped", "upstream_failed")
    assert states["release_lease"] in ("skipped", "upstream_failed")
    assert [s.name for s in client.list() if s.group == group] == ["leased_blue"]
    with pytest.raises(Conflict, match="leased by"):  # still the other holder's
        client.acquire_lease(group, "third", 5)


def test_a_retried_deploy_makes_no_second_service(eas_conn, airflow_db) -> None:
    from airflow_eas.operators.eas import EasDeployServiceOperator

    client, group = eas_conn.client, "retry"
    seed_group(client, group)
    op = EasDeployServiceOperator(task_id="deploy", group=group, spec=echo_service(APP_VERSION="2"))

    first = op.execute(task_context())
    second = op.execute(task_context())  # the retry
    assert first["service"] == second["service"] == "retry_green"
    assert first["previous"] == "retry_blue"
    assert second["version"] == first["version"]  # same spec: nothing rolled
    assert sorted(s.name for s in client.list() if s.group == group) == ["retry_blue", "retry_green"]


def test_triggers_run_against_the_platform(eas_conn, airflow_db) -> None:
    from airflow_eas.triggers.eas import EasMetricsTrigger, EasServiceReadyTrigger

    client, group = eas_conn.client, "trig"
    blue = seed_group(client, group)

    async def first(trigger) -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    ready = asyncio.run(first(EasServiceReadyTrigger(service=blue, eas_conn_id="eas_default", poll_interval=0.2)))
    assert ready["status"] == "success"
    assert ready["service"] == blue
    json.dumps(ready)
    # No traffic: three inconclusive measurements, never a pass; each one is in the event.
    quiet = EasMetricsTrigger(
        service=blue, analysis={"window_seconds": 5, "min_requests": 1000, "count": 3, "inconclusive_limit": 2},
        eas_conn_id="eas_default", poll_interval=0.2, deadline=time.time() + 30,
    )  # fmt: skip
    event = asyncio.run(first(quiet))
    assert event["status"] == "failed"
    assert event["phase"] == "Inconclusive"
    assert "no data is never a pass" in event["message"]
    assert [m["result"] for m in event["measurements"]] == ["Inconclusive"] * 3


RESCHEDULE_DAG = '''
from datetime import datetime

from airflow.sdk import DAG

from airflow_eas.sensors.eas import EasServiceReadySensor

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    EasServiceReadySensor(task_id="ready", service="iris", eas_conn_id="{conn_id}", mode="reschedule",
                          poke_interval=1, timeout=120, max_consecutive_errors=3, retries=0, deferrable=False)
'''


def test_reschedule_mode_sensor_counts_platform_errors_across_pokes(airflow_db, monkeypatch) -> None:
    """A real reschedule run: each poke is a fresh run of the task (the task is rescheduled, its object
    rebuilt), so the count of errors in a row must live in Airflow's task state store, not the sensor."""
    from airflow.models import TaskInstance, TaskReschedule
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session

    from airflow_eas.demo import load_dag
    from airflow_eas.server.embedded import free_port
    from tests.provider.conftest import DAGS_FOLDER

    # The platform is down: every check is a PlatformUnavailable (retryable, so counted, not fatal at once).
    down = {"conn_type": "eas", "host": "127.0.0.1", "port": free_port(), "password": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_EAS_DOWN", json.dumps(down))
    dag_file = DAGS_FOLDER / "reschedule_errors.py"
    dag_file.write_text(RESCHEDULE_DAG.format(dag_id="reschedule_errors", conn_id="eas_down"))
    dag = load_dag(dag_file)

    started = time.monotonic()
    run = dag.test()
    took = time.monotonic() - started

    assert str(run.state) == "failed"
    assert took < 100, f"failed after {took:.0f} s: by the sensor's timeout (120 s), not by its error count"
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id="ready").one()
        reschedules = session.query(TaskReschedule).filter_by(ti_id=ti.id).count()
        stored = {s.key: json.loads(s.value) for s in session.query(TaskStateStoreModel).filter_by(
            dag_id=run.dag_id, run_id=run.run_id, task_id="ready")}  # fmt: skip
        assert str(ti.state) == "failed"
        assert ti.try_number == 1  # one try: the pokes are reschedules, not retries
    assert reschedules == 2  # poke 1 and 2 rescheduled; poke 3 saw the third error in a row and failed
    assert stored == {"consecutive_errors_try1": 3}
