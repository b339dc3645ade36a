"""``eas guard``: the cluster's dead-man's switch and canary guard, as real ``eas guard`` processes.

The guard runs as a subprocess against the emulated API server and the real Prometheus; the
"rollout" is the test holding the group's lease (as test_rollout_guard.py does on one host).
The exporter plays the gateway: GROUP_RPS into each group, split by the route's weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_eas.errors import RolloutAborted
from airflow_eas.guard import RolloutGuard
from airflow_eas.platform.base import GuardSettings, Lease
from airflow_eas.platform.kubernetes import KubernetesPlatform
from airflow_eas.platform.kubernetes.api import KubeApi
from airflow_eas.platform.kubernetes.guard_manifests import GUARD_NAME, GUARD_RULES
from airflow_eas.rollout import ABORTED_PREFIX, LeaseRef, heartbeat, platform_reverted
from airflow_eas.spec import parse_spec
from tests.conftest import wait_until
from tests.platform.kubernetes.emulator import Cluster, Controllers
from tests.platform.kubernetes.prometheus import Exporter, Prometheus
from tests.platform.kubernetes.test_platform import image_spec, platform_of

GUARD = GuardSettings(window_seconds=5, max_error_rate=0.05, min_requests=10)


def two_members(kube_conn: str, controllers: Controllers, group: str) -> tuple[KubernetesPlatform, str, str]:
    """``<group>_blue`` with all traffic, ``<group>_green`` ready without any."""
    p = platform_of(kube_conn)
    blue, green = f"{group}_blue", f"{group}_green"
    p.create(parse_spec(image_spec(blue, group=group)))
    p.create(parse_spec(image_spec(green, "2", group=group)))
    controllers.step()
    p.set_traffic(group, {blue: 100, green: 0})
    return p, blue, green


def weights(p: KubernetesPlatform, group: str) -> dict[str, int]:
    return p.members(group)


def revoked(p: KubernetesPlatform, group: str) -> Lease | None:
    lease = p.get_lease(group)
    return lease if lease is not None and lease.revoked else None


def warnings_of(p: KubernetesPlatform, group: str) -> list[str]:
    return [e.message for e in p.describe_group(group).events if e.level == "warning"]


class GuardProcess:
    """One ``eas guard`` replica: a real process of the CLI, stopped with SIGTERM as Kubernetes stops a pod."""

    def __init__(self, kubeconfig: Path, prometheus_url: str, identity: str, log: Path) -> None:
        env = {**os.environ, "EAS_KUBERNETES_EXTRAS": json.dumps({"prometheus_url": prometheus_url})}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_eas.cli", "guard", "--kubeconfig", str(kubeconfig), "--identity",
             identity, "--interval", "0.5", "--min-window", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@pytest.fixture
def guards(cluster: Cluster, namespace: str, prometheus: Prometheus, tmp_path: Path) -> Iterator[Any]:
    started: list[GuardProcess] = []

    def start(identity: str = "guard-1") -> GuardProcess:
        kubeconfig = cluster.kubeconfig(tmp_path, namespace)
        started.append(GuardProcess(kubeconfig, prometheus.url, identity, tmp_path / f"{identity}.log"))
        return started[-1]

    try:
        yield start
    finally:
        for g in started:
            g.stop()


def leader_of(controllers: Controllers) -> str | None:
    lease = controllers.api.find("Lease", controllers.namespace, GUARD_NAME)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_lapsed_lease_with_split_traffic_is_reverted_by_one_of_two_guards(
    kube_conn: str, controllers: Controllers, guards: Any, tmp_path: Path
) -> None:
    p, blue, green = two_members(kube_conn, controllers, "deadman")
    first, second = guards("guard-1"), guards("guard-2")
    wait_until(lambda: leader_of(controllers) in ("guard-1", "guard-2"), 60, "a guard to lead")
    # A run takes the lease, splits traffic, and is killed (it never renews).
    p.acquire_lease("deadman", "killed_dag/run_1", 3, stable=blue)
    p.set_traffic("deadman", {blue: 50, green: 50})
    split_at = time.monotonic()

    wait_until(lambda: weights(p, "deadman") == {blue: 100, green: 0}, 15, "traffic back to the stable member")
    took = time.monotonic() - split_at
    assert took < 3 + 4, f"reverted {took:.1f} s after the split (TTL 3 s)"
    # The Lease is marked right after the weights (the safe state first).
    lease = wait_until(lambda: revoked(p, "deadman"), 5, "the lease to be marked revoked")
    assert isinstance(lease, Lease)
    assert "the lease of killed_dag/run_1 lapsed (no heartbeat for 3 s) while traffic was split" in lease.reason
    assert lease.reason.endswith(f"all traffic went back to {blue}")
    time.sleep(2)  # both replicas had passes meanwhile: only the leader acted, once
    reverts = [w for w in warnings_of(p, "deadman") if "lapsed" in w]
    assert reverts == [lease.reason], reverts

    # The run, coming back, fails with the reason (its heartbeat and its check of the group say so).
    with pytest.raises(RolloutAborted, match=f"^{ABORTED_PREFIX}the lease of killed_dag/run_1 lapsed"):
        heartbeat(p, LeaseRef("deadman", "killed_dag/run_1", 60))
    reverted = platform_reverted(p, "deadman", "killed_dag/run_1")
    assert reverted is not None
    assert "lapsed" in reverted.reason
    # The group is free for the next rollout.
    assert p.acquire_lease("deadman", "next_dag/run_1", 60, stable=blue).holder == "next_dag/run_1"
    p.release_lease("deadman", "next_dag/run_1")

    # The leader stopped (a rolling update, a drained node) gives the lead back: the standby takes over.
    leader = leader_of(controllers)
    standby = "guard-2" if leader == "guard-1" else "guard-1"
    assert {"guard-1": first, "guard-2": second}[leader].stop() == 0
    wait_until(lambda: leader_of(controllers) == standby, 10, "the standby to lead")
    assert "standing by" in (tmp_path / f"{standby}.log").read_text()


def test_breaching_canary_is_reverted(
    kube_conn: str, controllers: Controllers, guards: Any, gateway_traffic: Exporter
) -> None:
    p, blue, green = two_members(kube_conn, controllers, "canary")
    gateway_traffic.set(controllers.namespace, "canary-green", error_rate=0.5)
    guards()
    wait_until(lambda: leader_of(controllers) == "guard-1", 60, "the guard to lead")
    p.acquire_lease("canary", "canary_dag/run_1", 300, stable=blue, guard=GUARD)
    p.set_traffic("canary", {blue: 50, green: 50})
    shifted = time.monotonic()

    wait_until(lambda: weights(p, "canary")[green] == 0, 15, "the guard to take the canary's traffic")
    assert time.monotonic() - shifted < 15
    assert weights(p, "canary") == {blue: 100, green: 0}
    lease = wait_until(lambda: revoked(p, "canary"), 5, "the lease to be marked revoked")
    assert isinstance(lease, Lease)
    assert f"the guard saw {green} fail: error rate" in lease.reason
    assert "exceeds 5.0%" in lease.reason
    assert lease.reason in warnings_of(p, "canary")
    with pytest.raises(RolloutAborted, match="error rate"):
        p.renew_lease("canary", "canary_dag/run_1", 300)


def test_healthy_canary_and_released_lease_are_left_alone(
    kube_conn: str, controllers: Controllers, guards: Any, gateway_traffic: Exporter
) -> None:
    p, blue, green = two_members(kube_conn, controllers, "calm")
    guard = guards()
    wait_until(lambda: leader_of(controllers) == "guard-1", 60, "the guard to lead")
    p.acquire_lease("calm", "calm_dag/run_1", 300, stable=blue, guard=GUARD)
    p.set_traffic("calm", {blue: 50, green: 50})
    # The canary serves cleanly for longer than the guard's window, with more than its min_requests.
    wait_until(lambda: p.metrics(green, GUARD.window_seconds).requests >= 3 * GUARD.min_requests, 30,
               "the canary's traffic to show in Prometheus")
    time.sleep(GUARD.window_seconds)
    assert weights(p, "calm") == {blue: 50, green: 50}, guard.output()
    assert p.get_lease("calm").state == "held"

    # A released lease (the run ended; say it left the split for a person to finish) is nobody's to revert.
    p.renew_lease("calm", "calm_dag/run_1", 2)
    p.release_lease("calm", "calm_dag/run_1")
    time.sleep(2 + 3)
    assert weights(p, "calm") == {blue: 50, green: 50}, guard.output()
    assert p.get_lease("calm") is None
    assert warnings_of(p, "calm") == [], guard.output()


class Recorder:
    """Every (verb, resource) a KubeApi is asked for: what the guard's Role must grant, and all it may."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.used: set[tuple[str, str, str]] = set()
        real = KubeApi.request

        def request(api: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
            parts = path.strip("/").split("/")
            group = "" if parts[0] == "api" else parts[1]
            rest = parts[parts.index("namespaces") + 2:]
            verb = {"GET": "get" if len(rest) > 1 else "list", "POST": "create", "PATCH": "patch",
                    "DELETE": "delete"}[method]
            self.used.add((group, "/".join([rest[0], *rest[2:]]), verb))
            return real(api, method, path, **kwargs)

        monkeypatch.setattr(KubeApi, "request", request)


def test_the_guards_role_grants_exactly_what_it_uses(
    kube_conn: str, controllers: Controllers, prometheus: Prometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every path of a pass, in this process: a lapse with traffic split, a lapse with nothing split,
    # a guarded canary read from Prometheus, leading and resigning.
    p, blue, green = two_members(kube_conn, controllers, "split")
    p.create(parse_spec(image_spec("quiet_blue", group="quiet")))
    p.create(parse_spec(image_spec("watched_blue", group="watched")))
    p.create(parse_spec(image_spec("watched_green", group="watched")))
    controllers.step()
    p.set_traffic("quiet", {"quiet_blue": 100})
    p.set_traffic("watched", {"watched_blue": 80, "watched_green": 20})
    p.acquire_lease("split", "dag/run_1", 1, stable=blue)
    p.set_traffic("split", {blue: 50, green: 50})
    p.acquire_lease("quiet", "dag/run_2", 1, stable="quiet_blue")
    p.acquire_lease("watched", "dag/run_3", 300, stable="watched_blue", guard=GUARD)
    time.sleep(1.5)

    recorder = Recorder(monkeypatch)
    guard_platform = platform_of(kube_conn)
    guard = RolloutGuard(guard_platform, leader=lambda: guard_platform.lead(GUARD_NAME, "me", 5))
    guard.run_once()
    guard_platform.resign(GUARD_NAME, "me")
    used = set(recorder.used)

    assert p.get_lease("split").revoked
    assert p.get_lease("quiet").state == "lapsed"
    assert p.get_lease("watched").state == "held"
    assert weights(p, "watched") == {"watched_blue": 80, "watched_green": 20}, "no data is never a breach"
    granted = {(group, resource, verb) for group, resource, verbs in GUARD_RULES for verb in verbs}
    assert used == granted
    # The quiet group's holder may renew its lapsed lease (nothing was reverted): it holds again.
    assert p.renew_lease("quiet", "dag/run_2", 60).state == "held"


@pytest.mark.parametrize(("argv", "error"), [
    (["guard", "--interval", "0"], "eas: --interval: 0.0 is not a positive number of seconds"),
    (["guard", "--interval", "10"], "eas: --leader-ttl 15 must be at least twice --interval 10"),
    (["guard", "--min-window", "-5"], "eas: --min-window: -5 is not a whole number of seconds from 0"),
    (["guard", "--kubeconfig", "/nonexistent/kubeconfig"],
     "eas: kubeconfig /nonexistent/kubeconfig: Invalid kube-config file. No configuration found."),
])
def test_bad_guard_options_are_one_clear_line(argv: list[str], error: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_eas.cli import main

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == error
