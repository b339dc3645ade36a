"""End to end: the rollout DAG (build_rollout_dag + dag.test()) on the emulated cluster with a real Prometheus.

Only the connection differs from the single-host rollouts: ``eas_conn_id`` names a ``kubernetes``
connection. A background thread plays the cluster's controllers (pods made ready); the exporter
plays the gateway's telemetry: 30 requests/s into the group, split by the HTTPRoute's current
weights (read from the emulated API server), each member failing at its version's error rate.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_eas.spec import parse_spec
from tests.plans import rollout_plan
from tests.platform.kubernetes.emulator import Controllers, Loop
from tests.platform.kubernetes.prometheus import Exporter, Prometheus
from tests.platform.kubernetes.test_platform import image_spec, platform_of
from tests.provider.conftest import run_plan, task_states

# dag.test() on a busy machine: Airflow alone takes half a minute to start the first task.
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]


def seed(kube_conn: str, controllers: Controllers, group: str) -> Any:
    platform = platform_of(kube_conn)
    platform.create(parse_spec(image_spec(f"{group}_blue", group=group)))
    controllers.step()
    platform.set_traffic(group, {f"{group}_blue": 100})
    return platform


def plan_for(kube_conn: str, dag_id: str, group: str) -> dict[str, Any]:
    service = image_spec("x", "{{ params.version }}")
    service.pop("name")
    service["metadata"] = {"instance": 2}
    plan = rollout_plan(dag_id, group, service=service, eas_conn_id=kube_conn, warmup={"count": 0})
    plan["analysis"].update(window_seconds=4, min_requests=15, timeout_seconds=40)
    return plan


def weights(platform: Any, group: str) -> dict[str, int]:
    return {m.service: m.weight for m in platform.describe_group(group).members}


def test_good_version_is_promoted_on_the_cluster(
    kube_conn: str, controllers: Controllers, prometheus: Prometheus, gateway_traffic: Exporter, airflow_db: Any
) -> None:
    platform = seed(kube_conn, controllers, "good")
    with Loop(controllers) as loop:
        run = run_plan(plan_for(kube_conn, "k8s_good_release", "good"), {"version": "2"})
        time.sleep(2)
    states = task_states(run)
    assert run.state == "success", states
    assert states["promote"] == "success"
    assert states["rollback"] == "skipped"
    assert weights(platform, "good") == {"good_blue": 0, "good_green": 100}
    green = platform.describe("good_green")
    assert green.ready
    assert green.spec["containers"][0]["image"] == "registry.example.com/echo:2"
    assert platform.describe("good_blue").status == "Stopped", "the old member is scaled down"
    assert controllers.api.find("Lease", controllers.namespace, "good") is None, "the lease is given back"
    assert not loop.errors


def test_bad_version_is_rolled_back_on_the_cluster(
    kube_conn: str, controllers: Controllers, prometheus: Prometheus, gateway_traffic: Exporter, airflow_db: Any
) -> None:
    platform = seed(kube_conn, controllers, "bad")
    gateway_traffic.set(controllers.namespace, "bad-green", error_rate=0.5)
    with Loop(controllers) as loop:
        run = run_plan(plan_for(kube_conn, "k8s_bad_release", "bad"), {"version": "2"})
        time.sleep(1)
    states = task_states(run)
    assert run.state == "failed", states
    assert states["analysis_50"] == "failed", states
    assert states["rollback"] == "success", states
    assert states["promote"] == "upstream_failed"
    assert weights(platform, "bad") == {"bad_blue": 100, "bad_green": 0}
    assert platform.describe("bad_green").status == "Stopped"
    assert platform.describe("bad_blue").ready
    assert not loop.errors
