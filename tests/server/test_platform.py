"""The single-host platform end to end: real `eas server`, real HAProxy, real processes, real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from airflow_eas.errors import Conflict, InvalidSpec, NotFound
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running, wait_until
from tests.load import Load


def _post(url: str, token: str | None, body: bytes = b"{}") -> requests.Response:
    headers = {"Authorization": token} if token is not None else {}
    return requests.post(url, data=body, headers=headers, timeout=10)


def test_create_invoke_scale_stop_start_delete(eas_server) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("life", instances=1)))
    assert info.status == "Creating"
    wait_running(client, "life")
    resp = _post(info.endpoint, info.token, b"hello")
    assert resp.status_code == 200
    assert resp.json()["echo"] == "hello"

    client.scale("life", 3)
    info = wait_running(client, "life", 3)
    seen = {_post(info.endpoint, info.token).json()["instance"] for _ in range(30)}
    assert seen == {i.id for i in info.instance_list}, "round robin reaches every instance"

    client.scale("life", 1)
    info = wait_until(lambda: (i := client.describe("life")) and len(i.instance_list) == 1 and i, 30, "scale in")
    assert info.status == "Running"

    client.stop("life")
    wait_until(lambda: client.describe("life").status == "Stopped", 30, "stop")
    assert _post(info.endpoint, info.token).status_code == 503

    client.start("life")
    wait_running(client, "life", 1)
    assert _post(info.endpoint, info.token).status_code == 200

    client.delete("life")
    wait_until(lambda: not any(s.name == "life" for s in client.list()), 30, "delete")
    with pytest.raises(NotFound):
        client.describe("life")
    assert _post(info.endpoint, info.token).status_code == 404
    leftovers = [eas_server.data_dir / d / "life" for d in ("logs", "services", "cache")]
    wait_until(lambda: not any(p.exists() for p in leftovers), 10, "a deleted service's files to go")


def test_wrong_or_missing_token_is_401(eas_server) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("authz")))
    wait_running(client, "authz")
    assert _post(info.endpoint, None).status_code == 401
    assert _post(info.endpoint, "not-the-token").status_code == 401
    assert _post(info.endpoint, info.token + "x").status_code == 401
    assert _post(info.endpoint, info.token).status_code == 200
    assert _post(f"{eas_server.gateway}/api/predict/nope", info.token).status_code == 404
    # the admin API wants the admin token
    assert requests.get(f"{eas_server.endpoint}/api/v2/services", timeout=5).status_code == 401


def test_bad_specs_rejected_with_their_reasons(eas_server) -> None:
    client = eas_server.client
    cases = {
        "Bad-Name": "name: 'Bad-Name' is not a valid service name",
        "reserved": "containers.0.port: port 8080 is reserved",
    }
    base = echo_spec("x")
    bad = dict(base, name="Bad-Name")
    resp = requests.post(f"{eas_server.endpoint}/api/v2/services", json=bad, timeout=5,
                         headers={"Authorization": f"Bearer {eas_server.token}"})
    assert resp.status_code == 400
    assert cases["Bad-Name"] in resp.json()["message"]
    reserved = json.loads(json.dumps(base))
    reserved["containers"][0]["port"] = 8080
    resp = requests.post(f"{eas_server.endpoint}/api/v2/services", json=reserved, timeout=5,
                         headers={"Authorization": f"Bearer {eas_server.token}"})
    assert resp.status_code == 400
    assert cases["reserved"] in resp.json()["message"]
    with pytest.raises(InvalidSpec, match="metadata.replicas: unknown field"):
        parse_spec({**base, "metadata": {"replicas": 2}})
    client.create(parse_spec(echo_spec("dupe")))
    with pytest.raises(Conflict, match="already exists"):
        client.create(parse_spec(echo_spec("dupe")))


def test_group_split_follows_weights(eas_server) -> None:
    client = eas_server.client
    client.create(parse_spec(echo_spec("split_a", group="split", APP_VERSION="a")))
    client.create(parse_spec(echo_spec("split_b", instances=2, group="split", APP_VERSION="b")))
    wait_running(client, "split_a")
    wait_running(client, "split_b")
    group = client.describe_group("split")
    assert {m.service: m.weight for m in group.members} == {"split_a": 0, "split_b": 0}, "new members get 0"
    client.set_traffic("split", {"split_a": 80, "split_b": 20})

    conn = http.client.HTTPConnection("127.0.0.1", eas_server.gateway_port, timeout=10)
    seen: Counter = Counter()
    for _ in range(2000):
        conn.request("POST", "/api/predict/split", body=b"{}", headers={"Authorization": group.token})
        resp = conn.getresponse()
        assert resp.status == 200, (_, resp.read(), eas_server.client.describe_group("split"))
        seen[json.loads(resp.read())["version"]] += 1
    share_a = seen["a"] / 2000
    assert abs(share_a - 0.80) <= 0.03, f"split_a got {share_a:.1%} of traffic, wanted 80% ± 3%"

    wait_until(lambda: client.metrics("split_b", 60).requests == seen["b"], 10,
               f"member metrics to count group traffic {seen} {client.metrics('split_a', 60)}")
    assert client.metrics("split_a", 60).requests == seen["a"]


def test_weight_changes_under_load_lose_nothing(eas_server) -> None:
    client = eas_server.client
    client.create(parse_spec(echo_spec("shift_a", group="shift", APP_VERSION="a")))
    client.create(parse_spec(echo_spec("shift_b", group="shift", APP_VERSION="b")))
    wait_running(client, "shift_a")
    wait_running(client, "shift_b")
    group = client.set_traffic("shift", {"shift_a": 100})
    with Load(group.endpoint, group.token, threads=4) as load:
        for a, b in [(90, 10), (50, 50), (10, 90), (0, 100), (100, 0), (30, 70)]:
            client.set_traffic("shift", {"shift_a": a, "shift_b": b})
            wait_until(lambda n=load.total: load.total > n + 100, 10, "traffic")
    assert load.total > 600
    assert load.errors == 0, load.failures[:5]


def test_kill_9_of_an_instance_under_load_costs_clients_nothing(eas_server) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("sturdy", instances=2)))
    info = wait_running(client, "sturdy", 2)
    victim = info.instance_list[0]
    with Load(info.endpoint, info.token, threads=4) as load:
        wait_until(lambda: load.total > 200, 10, "traffic")
        pid = _pid_listening(victim.address)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: load.total > 1500, 20, "more traffic")
    assert load.errors == 0, load.failures[:5]

    def restarted():
        info = wait_running(client, "sturdy", 2)
        return any(x.id == victim.id and x.restarts == 1 for x in info.instance_list) and info

    info = wait_until(restarted, 30, "the killed instance to be restarted")
    assert any("exited" in e.message or "killed" in e.message for e in info.events)


def test_rolling_update_under_load(eas_server) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("roll", instances=2, APP_VERSION="1")))
    info = wait_running(client, "roll", 2)
    with Load(info.endpoint, info.token, threads=4) as load:
        wait_until(lambda: load.total > 100, 10, "traffic")
        client.modify(parse_spec(echo_spec("roll", instances=2, APP_VERSION="2")))
        new = wait_until(
            lambda: (i := client.describe("roll")).status == "Running" and i.version == 2
            and all(x.version == 2 for x in i.instance_list) and i, 60, "rollout")
        n = load.total
        wait_until(lambda: load.total > n + 100, 10, "traffic after rollout")
    assert load.errors == 0, load.failures[:5]
    assert len(new.instance_list) == 2
    assert _post(info.endpoint, info.token).json()["version"] == "2"


def test_service_that_cannot_start_is_failed_with_reason(eas_server) -> None:
    client = eas_server.client
    client.create(parse_spec(echo_spec("crashing", EXIT_CODE=3)))
    info = wait_until(lambda: (i := client.describe("crashing")).status == "Failed" and i, 30, "Failed")
    assert "exited with code 3" in info.reason
    assert "refusing to start" in info.reason, "the reason carries the last log lines"
    assert any(e.level == "error" for e in info.events)
    assert "refusing to start" in client.logs("crashing")


def test_failed_update_keeps_the_old_version_serving(eas_server) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("keep", APP_VERSION="1")))
    wait_running(client, "keep")
    with Load(info.endpoint, info.token, threads=2) as load:
        client.modify(parse_spec(echo_spec("keep", APP_VERSION="2", EXIT_CODE=1)))
        wait_until(lambda: client.describe("keep").status == "Failed", 30, "Failed")
    assert load.errors == 0
    assert _post(info.endpoint, info.token).json()["version"] == "1"


def test_metrics_and_prometheus(eas_server) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("measured", FAIL_RATE="0.25", SLOW_MS="5")))
    wait_running(client, "measured")
    codes = Counter(_post(info.endpoint, info.token).status_code for _ in range(200))
    m = wait_until(lambda: (m := client.metrics("measured", 60)).requests >= 200 and m, 10, "metrics")
    assert m.requests == 200
    assert m.errors == codes[500]
    assert 0.1 < m.error_rate < 0.4
    assert m.p50_ms is not None
    assert m.p50_ms >= 5
    assert m.p99_ms >= m.p50_ms
    assert m.statuses == {"200": codes[200], "500": codes[500]}
    metrics_token = (eas_server.data_dir / "metrics_token").read_text().strip()
    assert oct((eas_server.data_dir / "metrics_token").stat().st_mode & 0o777) == "0o600"
    resp = requests.get(f"{eas_server.endpoint}/metrics", timeout=5,
                        headers={"Authorization": f"Bearer {metrics_token}"})
    assert resp.status_code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(resp.text) for s in family.samples}
    svc = (("service", "measured"),)
    assert samples[("eas_requests_total", svc)] == 200
    assert samples[("eas_errors_total", svc)] == codes[500]
    assert samples[("eas_responses_total", (("code", "500"), *svc))] == codes[500]
    assert samples[("eas_request_duration_seconds_count", svc)] == 200
    assert samples[("eas_request_duration_seconds_bucket", (("le", "0.001"), *svc))] == 0, "each took 5 ms or more"
    assert samples[("eas_request_duration_seconds_sum", svc)] >= 200 * 0.005
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=resp.text, capture_output=True, text=True)
        assert check.returncode == 0, check
        assert not (check.stdout + check.stderr).strip(), f"promtool has remarks: {check}"
    refused = requests.get(f"{eas_server.endpoint}/api/v2/services", timeout=5,
                           headers={"Authorization": f"Bearer {metrics_token}"})
    assert refused.status_code == 401, "the metrics token opens /metrics and nothing else"


def _pid_listening(address: str) -> int:
    port = int(address.rsplit(":", 1)[1])
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                inode = cols[9]
    assert inode, f"nothing listens on {address}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process owns {address}")
