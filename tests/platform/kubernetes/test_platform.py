"""KubernetesPlatform through KubernetesHook against the emulated API server, the test playing the controllers."""

from __future__ import annotations

import json
import time

import pytest

from airflow_eas.errors import Conflict, InvalidSpec, NotFound, RolloutAborted
from airflow_eas.platform.base import GuardSettings
from airflow_eas.platform.kubernetes import KubernetesPlatform
from airflow_eas.rollout import platform_reverted
from airflow_eas.spec import parse_spec
from tests.platform.kubernetes.emulator import CRASH, IMAGE_PULL, PENDING, UNSCHEDULABLE, Controllers


def platform_of(conn_id: str) -> KubernetesPlatform:
    from airflow_eas.hooks.eas import EasHook

    platform = EasHook(conn_id).get_platform()
    assert isinstance(platform, KubernetesPlatform)
    return platform


def image_spec(name: str, version: str = "1", token: str | None = None, **metadata: object) -> dict:
    return {
        "name": name,
        **({"token": token} if token else {}),
        "containers": [{"image": f"registry.example.com/echo:{version}", "command": "python app.py", "port": 8000,
                        "env": [{"name": "APP_VERSION", "value": version}]}],
        "metadata": {"instance": 2, **metadata},
    }


def test_create_describe_scale_stop_start_modify_delete(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    assert p.ns == controllers.namespace
    assert p.settings.gateway_name == "eg"
    info = p.create(parse_spec(image_spec("fraud_blue", token="tok-fraud-blue-1")))
    assert (info.status, info.instances, info.running_instances, info.version) == ("Creating", 2, 0, 1)
    assert info.token == "tok-fraud-blue-1"
    assert info.endpoint == "http://127.0.0.1:9/api/predict/fraud_blue"
    assert "token" not in info.spec
    with pytest.raises(Conflict, match="already exists"):
        p.create(parse_spec(image_spec("fraud_blue")))

    controllers.step()
    info = p.describe("fraud_blue")
    assert (info.status, info.running_instances) == ("Running", 2)
    assert info.ready
    assert {i.version for i in info.instance_list} == {1}
    assert all(i.address.endswith(":8000") for i in info.instance_list)
    assert any("service created with 2 instance(s)" in e.message for e in info.events)
    assert [s.name for s in p.list()] == ["fraud_blue"]

    info = p.scale("fraud_blue", 3)
    assert (info.status, info.instances) == ("Scaling", 3)
    controllers.step()
    assert p.describe("fraud_blue").running_instances == 3

    info = p.stop("fraud_blue")
    assert info.status == "Stopping"
    controllers.step()
    info = p.describe("fraud_blue")
    assert (info.status, info.instances, info.running_instances) == ("Stopped", 0, 0)
    assert info.spec["metadata"]["instance"] == 3, "stop keeps the spec"
    info = p.start("fraud_blue")
    assert info.instances == 3
    controllers.step()
    assert p.describe("fraud_blue").ready

    info = p.modify(parse_spec(image_spec("fraud_blue", "2", **{"instance": 3})))
    assert (info.status, info.version) == ("Updating", 2)
    assert not info.ready
    assert {i.version for i in info.instance_list} == {1}, "old pods serve until new ones are ready"
    deployment = controllers.api.get("Deployment", p.ns, "fraud-blue")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/echo:2"
    assert deployment["spec"]["template"]["metadata"]["labels"]["airflow-eas.io/version"] == "2"
    assert p.modify(parse_spec(image_spec("fraud_blue", "2", instance=3))).version == 2, "same spec: no new version"
    controllers.step()
    info = p.describe("fraud_blue")
    assert info.ready
    assert {i.version for i in info.instance_list} == {2}
    assert "2" in p.logs("fraud_blue", 5)
    assert all(line.startswith("[fraud-blue-v2-") for line in
                                                   p.logs("fraud_blue", 5).splitlines())

    p.delete("fraud_blue")
    with pytest.raises(NotFound):
        p.describe("fraud_blue")
    assert controllers.api.find("Service", p.ns, "fraud-blue") is None
    assert controllers.api.find("HTTPRoute", p.ns, "fraud-blue") is None
    assert controllers.api.find("Secret", p.ns, "fraud-blue-token") is None
    controllers.step()
    assert controllers.api.list("Pod", p.ns) == []


def test_group_traffic_patches_only_weights(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue", group="fraud")))
    p.create(parse_spec(image_spec("fraud_green", "2", group="fraud")))
    group = p.describe_group("fraud")
    assert {m.service: m.weight for m in group.members} == {"fraud_blue": 0, "fraud_green": 0}
    assert group.token
    assert group.endpoint.endswith("/api/predict/fraud")
    assert [g.name for g in p.list_groups()] == ["fraud"]
    before = controllers.api.get("HTTPRoute", p.ns, "fraud")

    group = p.set_traffic("fraud", {"fraud_blue": 90, "fraud_green": 10})
    assert {m.service: m.weight for m in group.members} == {"fraud_blue": 90, "fraud_green": 10}
    after = controllers.api.get("HTTPRoute", p.ns, "fraud")
    for ref in before["spec"]["rules"][0]["backendRefs"]:
        ref.pop("weight")
    for ref in after["spec"]["rules"][0]["backendRefs"]:
        assert ref.pop("weight") in (90, 10)
    assert after == before, "nothing but the weights changed"
    assert p.set_traffic("fraud", {"fraud_green": 100}).weight_of("fraud_blue") == 90, "unnamed members keep theirs"

    with pytest.raises(NotFound, match="not a member"):
        p.set_traffic("fraud", {"fraud_red": 5})
    with pytest.raises(InvalidSpec, match="0 to 100"):
        p.set_traffic("fraud", {"fraud_blue": 101})
    with pytest.raises(Conflict, match="taken by a group"):
        p.create(parse_spec(image_spec("fraud")))

    p.delete("fraud_green")
    assert [m.service for m in p.describe_group("fraud").members] == ["fraud_blue"]
    p.delete("fraud_blue")
    with pytest.raises(NotFound):
        p.describe_group("fraud")


def test_lease_conflict_renewal_and_expiry(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue", group="fraud")))
    p.set_traffic("fraud", {"fraud_blue": 100})
    assert p.get_lease("fraud") is None
    # held long enough for the conflict checks below, however slow the machine; the expiry comes last
    lease = p.acquire_lease("fraud", "run-1", 60, stable="fraud_blue")
    assert (lease.holder, lease.stable, lease.ttl_seconds, lease.state) == ("run-1", "fraud_blue", 60, "held")
    assert lease.expires_at > time.time()
    stored = controllers.api.get("Lease", p.ns, "fraud")
    assert stored["spec"]["holderIdentity"] == "run-1"
    assert stored["spec"]["leaseDurationSeconds"] == 60
    assert stored["metadata"]["annotations"]["airflow-eas.io/stable"] == "fraud_blue"
    with pytest.raises(Conflict, match="leased by 'run-1'"):
        p.acquire_lease("fraud", "run-2", 60)
    with pytest.raises(Conflict, match="leased by 'run-1', not 'run-2'"):
        p.renew_lease("fraud", "run-2", 60)
    with pytest.raises(InvalidSpec, match="stable: 'fraud_red' is not a member"):
        p.acquire_lease("fraud", "run-1", 2, stable="fraud_red")
    assert p.acquire_lease("fraud", "run-1", 60).holder == "run-1", "the holder takes it again"
    assert p.renew_lease("fraud", "run-1", 60).holder == "run-1"
    p.release_lease("fraud", "run-2")  # not the holder: nothing happens
    with pytest.raises(Conflict):
        p.acquire_lease("fraud", "run-2", 60)
    assert p.renew_lease("fraud", "run-1", 2).ttl_seconds == 2, "a renewal may shorten the lease"
    time.sleep(2.2)
    assert p.get_lease("fraud").state == "lapsed"
    taken = p.acquire_lease("fraud", "run-2", 60)
    assert (taken.holder, taken.stable) == ("run-2", None), "an expired lease is taken over, not its stable member"
    assert "airflow-eas.io/stable" not in controllers.api.get("Lease", p.ns, "fraud")["metadata"]["annotations"]
    p.release_lease("fraud", "run-2")
    assert controllers.api.find("Lease", p.ns, "fraud") is None
    assert p.get_lease("fraud") is None
    assert p.acquire_lease("fraud", "run-3", 60).holder == "run-3"


def test_lease_guard_revocation_and_group_events(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue", group="fraud")))
    p.create(parse_spec(image_spec("fraud_green", "2", group="fraud")))
    p.set_traffic("fraud", {"fraud_blue": 100})
    guard = GuardSettings(window_seconds=30, max_error_rate=0.05, min_requests=10)
    p.acquire_lease("fraud", "run-1", 600, stable="fraud_blue", guard=guard)
    stored = controllers.api.get("Lease", p.ns, "fraud")["metadata"]["annotations"]
    assert json.loads(stored["airflow-eas.io/guard"]) == guard.to_dict()
    lease = p.get_lease("fraud")
    assert (lease.holder, lease.stable, lease.guard, lease.ttl_seconds, lease.state, lease.reason) == (
        "run-1", "fraud_blue", guard, 600, "held", "")
    assert p.renew_lease("fraud", "run-1", 600, stable="fraud_green").stable == "fraud_green", "promote names it"

    # What a guard (or a person with kubectl annotate) does after giving traffic back: mark the lease revoked.
    controllers.api.patch("Lease", p.ns, "fraud", {"metadata": {"annotations": {
        "airflow-eas.io/state": "revoked", "airflow-eas.io/reason": "fraud_green: 9% errors over 30 s"}}})
    with pytest.raises(RolloutAborted, match="9% errors"):
        p.renew_lease("fraud", "run-1", 600)
    with pytest.raises(RolloutAborted, match="9% errors"):
        p.acquire_lease("fraud", "run-1", 600)
    reverted = platform_reverted(p, "fraud", "run-1")
    assert reverted is not None
    assert "9% errors" in reverted.reason
    # A revoked lease frees the group for the next rollout, which starts clean.
    fresh = p.acquire_lease("fraud", "run-2", 600, stable="fraud_blue")
    assert (fresh.holder, fresh.state, fresh.reason, fresh.guard) == ("run-2", "held", "", None)

    p.add_group_event("fraud", "error", "fraud_green failed its analysis")
    with pytest.raises(InvalidSpec, match="level"):
        p.add_group_event("fraud", "fatal", "x")
    with pytest.raises(NotFound):
        p.add_group_event("nope", "info", "x")
    events = p.describe_group("fraud").events
    messages = [(e.level, e.message) for e in events]
    assert ("error", "fraud_green failed its analysis") in messages
    assert ("info", "leased to run-2 for 600 s; stable member: fraud_blue") in messages
    assert ("info", "leased to run-1 for 600 s; stable member: fraud_blue, guarded") in messages
    assert not any("weight set" in m for _, m in messages), "member events stay on the members"
    kube = [e for e in controllers.api.list("Event", p.ns) if e["message"] == "fraud_green failed its analysis"]
    assert [(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"], e["type"]) for e in kube] == [
        ("HTTPRoute", "fraud", "EasRollout", "Warning")], "kubectl describe httproute fraud shows it"
    assert not any("failed its analysis" in e.message for e in p.describe("fraud_green").events)


@pytest.mark.parametrize(
    ("behaviour", "status", "reason"),
    [
        (IMAGE_PULL, "Failed", "ImagePullBackOff: pod fraud-blue-v1-.* cannot pull image registry.example.com/echo:1"),
        (CRASH, "Failed", "CrashLoopBackOff: container main of pod .* restarted 4 times, last exit code 3; last log "
                          "lines: .*ValueError: bad model file"),
        (UNSCHEDULABLE, "Creating", "Unschedulable: pod .*: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu"),
    ],
)
def test_reasons(kube_conn: str, controllers: Controllers, behaviour: str, status: str, reason: str) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue")))
    controllers.behaviour[("fraud_blue", 1)] = behaviour
    controllers.step()
    info = p.describe("fraud_blue")
    assert info.status == status
    assert pytest.approx(0) == info.running_instances
    import re

    assert re.match(reason, info.reason), info.reason
    assert any(re.match(reason, e.message) for e in info.events), "the reason is in the events too"


def test_progress_deadline_exceeded_fails_the_service(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue")))
    controllers.behaviour[("fraud_blue", 1)] = PENDING
    controllers.step()
    assert p.describe("fraud_blue").status == "Creating"
    # What the Deployment controller writes once progressDeadlineSeconds pass without progress.
    message = 'ReplicaSet "fraud-blue-5d8f" has timed out progressing.'
    controllers.api.patch("Deployment", p.ns, "fraud-blue", {"status": {"conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": message}]}},
        sub="status")
    info = p.describe("fraud_blue")
    assert info.status == "Failed"
    assert info.reason == f"ProgressDeadlineExceeded: {message}"


def test_failed_update_keeps_the_old_version_serving(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue")))
    controllers.step()
    controllers.behaviour[("fraud_blue", 2)] = IMAGE_PULL
    p.modify(parse_spec(image_spec("fraud_blue", "2")))
    controllers.step()
    info = p.describe("fraud_blue")
    assert info.status == "Failed"
    assert "cannot pull image registry.example.com/echo:2" in info.reason
    assert sum(1 for i in info.instance_list if i.version == 1 and i.status == "Running") == 2


def test_processor_deployment_and_spec_config(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    spec = {"name": "churn", "processor": "sklearn", "model_path": "https://models.example.com/churn.joblib",
            "storage": [{"mount_path": "/code", "git": {"repo": "https://git.example.com/c.git",
                                                        "password": "pa55word"}}]}
    p.create(parse_spec(spec))
    deployment = controllers.api.get("Deployment", p.ns, "churn")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/eas/model-server:1.0"
    assert "pa55word" not in json.dumps(deployment)
    config = controllers.api.get("ConfigMap", p.ns, "churn-spec-v1")
    assert json.loads(config["data"]["spec.json"])["model_path"] == spec["model_path"]
    assert "pa55word" not in json.dumps(config)
    info = p.describe("churn")
    assert info.spec["storage"][0]["git"]["password"] == "******"
    # An edit of the shown (redacted) spec keeps the password.
    edited = {**info.spec, "model_path": "https://models.example.com/churn-2.joblib"}
    p.modify(parse_spec(edited))
    creds = controllers.api.get("Secret", p.ns, "churn-credentials")
    assert creds["stringData"]["git-0-password"] == "pa55word"
    assert p.describe("churn").version == 2
    # A new password alone is a change (a new version), though the shown spec looks the same.
    edited["storage"][0]["git"]["password"] = "n3w-pa55"
    assert p.modify(parse_spec(edited)).version == 3
    assert controllers.api.get("Secret", p.ns, "churn-credentials")["stringData"]["git-0-password"] == "n3w-pa55"
    assert p.modify(parse_spec(edited)).version == 3, "the same again: no new version"
    # Each version loads its own spec; the one before the previous is gone.
    assert [v for v in (1, 2, 3) if controllers.api.find("ConfigMap", p.ns, f"churn-spec-v{v}")] == [2, 3]
    assert json.loads(controllers.api.get("ConfigMap", p.ns, "churn-spec-v2")["data"]["spec.json"])["model_path"] \
        == "https://models.example.com/churn-2.joblib"
    p.delete("churn")
    assert not [v for v in (2, 3) if controllers.api.find("ConfigMap", p.ns, f"churn-spec-v{v}")]


def test_hook_test_connection(kube_conn: str, controllers: Controllers) -> None:
    from airflow_eas.hooks.eas import EasHook

    ok, message = EasHook(kube_conn).test_connection()
    assert ok
    assert message == f"connected to namespace {controllers.namespace}: 0 services; gateway http://127.0.0.1:9"


def test_from_kubeconfig_and_cli(cluster, controllers: Controllers, tmp_path, capsys) -> None:
    from airflow_eas.cli import main

    kubeconfig = cluster.kubeconfig(tmp_path, controllers.namespace)
    spec = tmp_path / "svc.json"
    spec.write_text(json.dumps(image_spec("cli_svc")))
    base = ["--kubeconfig", str(kubeconfig)]
    assert main([*base, "create", str(spec)]) == 0
    controllers.step()
    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "cli_svc" in out
    assert "Running" in out
    assert "2/2" in out
    assert main([*base, "scale", "cli_svc", "1"]) == 0
    assert main([*base, "desc", "cli_svc", "--json"]) == 0
    desc = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert desc["instances"] == 1
    assert main([*base, "logs", "cli_svc", "--lines", "1"]) == 0
    assert capsys.readouterr().out.startswith("[cli-svc-v1-")
    group_spec = tmp_path / "member.json"
    group_spec.write_text(json.dumps(image_spec("cli_member", group="cli_group")))
    assert main([*base, "create", str(group_spec)]) == 0
    assert main([*base, "group", "traffic", "cli_group", "cli_member=100"]) == 0
    assert "cli_member=100" in capsys.readouterr().out
    assert main([*base, "group", "desc", "cli_group", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["members"] == [{"service": "cli_member", "weight": 100}]
    assert main([*base, "--namespace", "elsewhere", "desc", "cli_svc"]) == 1
    assert "service 'cli_svc' not found" in capsys.readouterr().err
    assert main(["--kubeconfig", str(tmp_path / "missing"), "list"]) == 1
    assert "kubeconfig" in capsys.readouterr().err


def test_route_acceptance_is_reported(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue", group="fraud")))
    assert p.set_traffic("fraud", {"fraud_blue": 100}).accepted is None, "no verdict from the gateway yet"
    # The Gateway's controller writes the route's status (the emulator has none: the test plays it).
    status = {"parents": [{"parentRef": {"name": "eg", "namespace": "gateways"}, "controllerName": "istio.io/x",
                           "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}]}
    controllers.api.patch("HTTPRoute", p.ns, "fraud", {"status": status}, sub="status")
    assert p.describe_group("fraud").accepted is False
    status["parents"][0]["conditions"][0].update(status="True", reason="Accepted")
    controllers.api.patch("HTTPRoute", p.ns, "fraud", {"status": status}, sub="status")
    assert p.set_traffic("fraud", {"fraud_blue": 100}).accepted is True


def test_invoke_goes_through_the_gateway_with_the_token(kube_conn: str, controllers: Controllers) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, bytes]] = []

    class Gateway(BaseHTTPRequestHandler):  # a stand-in for the Gateway's data plane: records, answers
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers.get("Authorization", ""), body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        p = platform_of(kube_conn)
        p._gateway = f"http://127.0.0.1:{server.server_address[1]}"
        p.create(parse_spec(image_spec("fraud_blue", token="svc-token-1", group="fraud")))
        assert p.invoke("fraud_blue", '{"x": 1}') == (200, b"ok")
        assert p.invoke("fraud", b"{}")[0] == 200
        group_token = p.describe_group("fraud").token
        assert seen == [("/api/predict/fraud_blue", "svc-token-1", b'{"x": 1}'),
                        ("/api/predict/fraud", group_token, b"{}")]
    finally:
        server.shutdown()
        server.server_close()


def test_modify_removes_what_the_new_spec_drops_and_moves_groups(kube_conn: str, controllers: Controllers) -> None:
    p = platform_of(kube_conn)
    spec = image_spec("ranker_blue", group="ranker")
    spec["cloud"] = {"computing": {"instances": [{"type": "m6i.large", "spot_price_limit": 0.1}]}}
    p.create(parse_spec(spec))
    pod = controllers.api.get("Deployment", p.ns, "ranker-blue")["spec"]["template"]["spec"]
    assert pod["affinity"]
    assert pod["tolerations"]
    moved = image_spec("ranker_blue", "2", group="ranker_v2")
    p.modify(parse_spec(moved))
    dep = controllers.api.get("Deployment", p.ns, "ranker-blue")
    assert "affinity" not in dep["spec"]["template"]["spec"]
    assert "tolerations" not in dep["spec"]["template"]["spec"]
    assert dep["metadata"]["labels"]["airflow-eas.io/group"] == "ranker_v2"
    with pytest.raises(NotFound):
        p.describe_group("ranker")  # its last member left: route, token and lease are gone
    assert [m.service for m in p.describe_group("ranker_v2").members] == ["ranker_blue"]
    moved["metadata"].pop("group")
    p.modify(parse_spec(moved))
    labels = controllers.api.get("Service", p.ns, "ranker-blue")["metadata"]["labels"]
    assert "airflow-eas.io/group" not in labels
    assert p.describe("ranker_blue").group is None
    assert p.list_groups() == []


def test_unreachable_api_server_is_one_clear_error(tmp_path, capsys) -> None:
    from airflow_eas.cli import main
    from airflow_eas.errors import PlatformUnavailable
    from tests.platform.kubernetes.prometheus import free_port

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
    }))
    p = KubernetesPlatform.from_kubeconfig(str(kubeconfig))
    assert p.ns == "default"
    with pytest.raises(PlatformUnavailable, match="cannot reach the Kubernetes API server at http://127.0.0.1"):
        p.list()
    assert main(["--kubeconfig", str(kubeconfig), "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eas: cannot reach the Kubernetes API server")
    assert err.count("\n") == 1
