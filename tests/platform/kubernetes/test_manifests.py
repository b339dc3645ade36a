"""What ``eas render`` emits: valid against Kubernetes' OpenAPI schema (strict) and the HTTPRoute CRD's fields.

kubernetes-validate bundles the OpenAPI schemas of every Kubernetes release; KUBE_VERSION is a
current one. HTTPRoutes are CRDs: they are checked against a trimmed copy of the Gateway API
CRD's schema (schemas/httproute.json, its source noted inside). Custom resources without a
vendored schema (Envoy Gateway's SecurityPolicy) are checked field by field below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from airflow_eas.cli import main
from airflow_eas.errors import InvalidSpec
from airflow_eas.platform.kubernetes import ClusterSettings
from airflow_eas.platform.kubernetes import manifests as m
from airflow_eas.spec import parse_spec

KUBE_VERSION = "1.34.0"
HTTPROUTE_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "httproute.json").read_text())
SETTINGS = ClusterSettings(namespace="ml", gateway_name="eg", gateway_namespace="gateways",
                           model_server_image="registry.example.com/eas/model-server:1.0", spot_label="spot=true")

PROCESSOR = {
    "name": "fraud_green", "processor": "sklearn", "model_path": "oss://models/fraud/model.joblib",
    "token": "tok-1234567",
    "metadata": {"instance": 3, "cpu": 0.5, "memory": 2048, "gpu": 1, "group": "fraud",
                 "rolling_strategy": {"max_surge": 2, "max_unavailable": 1}},
    "cloud": {"computing": {"instances": [{"type": "ecs.gn6i-c4g1.xlarge"},
                                          {"type": "ecs.gn6i-c8g1.2xlarge", "spot_price_limit": 3.5}]}},
    "storage": [
        {"mount_path": "/code", "git": {"repo": "https://git.example.com/fraud.git", "branch": "main",
                                        "commit": "0a1b2c3", "username": "bot", "password": "pa55word"}},
        {"mount_path": "/data", "nfs": {"server": "10.0.0.9", "path": "/exports/data", "readOnly": True}},
        {"mount_path": "/assets", "oss": {"path": "oss://assets/fraud/", "endpoint": "oss-cn-hangzhou.aliyuncs.com"}},
    ],
}
IMAGE = {
    "name": "web_echo",
    "containers": [{"image": "nginx:1.27", "script": "exec nginx -g 'daemon off;'", "port": 8081,
                    "env": [{"name": "MODE", "value": "echo"}]}],
    "metadata": {"instance": 1},
}


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for doc in docs:
        out.setdefault(doc["kind"], doc)
    return out


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "HTTPRoute":
        jsonschema.validate(doc, HTTPROUTE_SCHEMA)
    elif doc["apiVersion"].startswith("gateway.envoyproxy.io/"):
        assert set(doc["spec"]) == {"targetRefs", "apiKeyAuth"}
    else:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("spec", [PROCESSOR, IMAGE], ids=["processor", "image"])
def test_every_manifest_is_valid(spec: dict[str, Any]) -> None:
    docs = m.service_manifests(parse_spec(spec), SETTINGS, token="tok-1234567", version=4)
    for doc in docs:
        validate(doc)
    assert [d["kind"] for d in docs if d["kind"] != "Secret"][-4:] == ["Deployment", "Service", "HTTPRoute",
                                                                         "SecurityPolicy"]


def test_processor_deployment_fields() -> None:
    docs = by_kind(m.service_manifests(parse_spec(PROCESSOR), SETTINGS, token="tok-1234567", version=4))
    dep = docs["Deployment"]
    assert dep["metadata"]["name"] == "fraud-green"
    assert dep["metadata"]["namespace"] == "ml"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 2, "maxUnavailable": 1}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["airflow-eas.io/service"] == "fraud_green"
    assert labels["airflow-eas.io/group"] == "fraud"
    assert labels["airflow-eas.io/version"] == "4"
    pod = dep["spec"]["template"]["spec"]
    main_c = pod["containers"][0]
    assert main_c["image"] == "registry.example.com/eas/model-server:1.0"
    assert main_c["resources"]["requests"] == {"cpu": "500m", "memory": "2048Mi", "nvidia.com/gpu": "1"}
    assert main_c["resources"]["limits"] == main_c["resources"]["requests"]
    assert main_c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert {v["name"]: v for v in pod["volumes"]}["spec"]["configMap"]["name"] == "fraud-green-spec-v4"
    mounts = {vm["mountPath"]: vm for vm in main_c["volumeMounts"]}
    assert mounts["/code"]["readOnly"]
    assert mounts["/data"]["readOnly"]
    assert "/assets" in mounts

    affinity = pod["affinity"]["nodeAffinity"]
    required = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert required == [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": ["ecs.gn6i-c4g1.xlarge", "ecs.gn6i-c8g1.2xlarge"]}]
    preferred = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [p["weight"] for p in preferred] == [100, 90], "earlier types are preferred"
    assert preferred[1]["preference"]["matchExpressions"][1] == {"key": "spot", "operator": "In", "values": ["true"]}
    assert pod["tolerations"] == [{"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]

    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["storage-1"]["nfs"] == {"server": "10.0.0.9", "path": "/exports/data", "readOnly": True}
    git, oss = pod["initContainers"]
    env = {e["name"]: e for e in git["env"]}
    assert env["GIT_REPO"]["value"] == "https://git.example.com/fraud.git"
    assert env["GIT_COMMIT"]["value"] == "0a1b2c3"
    assert env["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "fraud-green-credentials",
                                                                "key": "git-0-password"}
    assert oss["envFrom"] == [{"secretRef": {"name": "eas-oss", "optional": True}}]
    assert oss["command"][-2:] == ["oss://assets/fraud/", "/mnt/storage"]
    everything = json.dumps([d for d in docs.values() if d["kind"] != "Secret"])
    assert "pa55word" not in everything, "secrets only in Secrets"
    assert "tok-1234567" not in everything, "secrets only in Secrets"
    assert json.loads(dep["metadata"]["annotations"]["airflow-eas.io/spec"])["storage"][0]["git"]["password"] == \
        "******"


def test_image_deployment_fields() -> None:
    docs = by_kind(m.service_manifests(parse_spec(IMAGE), SETTINGS, token="tok-1234567"))
    c = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.27"
    assert c["command"] == ["/bin/sh", "-c", "exec nginx -g 'daemon off;'"]
    assert c["ports"] == [{"name": "http", "containerPort": 8081, "protocol": "TCP"}]
    assert {"name": "MODE", "value": "echo"} in c["env"]
    assert {"name": "PORT", "value": "8081"} in c["env"]
    assert c["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "ConfigMap" not in docs
    assert "affinity" not in docs["Deployment"]["spec"]["template"]["spec"]
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_routes_and_policy() -> None:
    docs = m.group_manifests("fraud", {"fraud_blue": 90, "fraud_green": 10}, SETTINGS, token="g-token-123")
    route = by_kind(docs)["HTTPRoute"]
    validate(route)
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg",
                                            "namespace": "gateways"}]
    rule = route["spec"]["rules"][0]
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/api/predict/fraud"}
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [("fraud-blue", 80, 90),
                                                                                  ("fraud-green", 80, 10)]
    policy = by_kind(docs)["SecurityPolicy"]
    assert policy["spec"]["targetRefs"][0]["name"] == "fraud"
    assert policy["spec"]["apiKeyAuth"]["credentialRefs"] == [{"group": "", "kind": "Secret", "name": "fraud-token"}]
    assert by_kind(docs)["Secret"]["stringData"] == {"token": "g-token-123"}
    bad = json.loads(json.dumps(route))
    bad["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, HTTPROUTE_SCHEMA)


def test_refusals() -> None:
    with pytest.raises(InvalidSpec, match="storage.0.local: hostPath volumes are off"):
        m.service_manifests(parse_spec({**IMAGE, "storage": [{"mount_path": "/m", "local": {"path": "/srv"}}]}),
                            SETTINGS, token="t" * 8)
    allowed = ClusterSettings(allow_host_path=True)
    docs = m.service_manifests(parse_spec({**IMAGE, "storage": [{"mount_path": "/m", "local": {"path": "/srv"}}]}),
                               allowed, token="t" * 8)
    validate(by_kind(docs)["Deployment"])
    with pytest.raises(InvalidSpec, match="cloud.computing.instances.0.tpye: unknown field"):
        parse_spec({**IMAGE, "cloud": {"computing": {"instances": [{"tpye": "x"}]}}})
    with pytest.raises(InvalidSpec, match="cloud.networking: unknown field"):
        parse_spec({**IMAGE, "cloud": {"networking": {}}})
    with pytest.raises(InvalidSpec, match="max_surge and max_unavailable cannot both be 0"):
        m.deployment(parse_spec({**IMAGE, "metadata": {"rolling_strategy": {"max_surge": 0}}}), SETTINGS)
    with pytest.raises(InvalidSpec, match="warm_up_data_path: asset:warm: a Kubernetes cluster has no asset registry"):
        m.service_manifests(parse_spec({**PROCESSOR, "warm_up_data_path": "asset:warm"}), SETTINGS, token="t" * 8)
    with pytest.raises(InvalidSpec, match="unknown extra.s. promethus_url"):
        ClusterSettings.from_extras({"promethus_url": "http://p", "kube_config_path": "/x"})


def test_eas_render_prints_what_is_applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(PROCESSOR))
    assert main(["render", str(path), "--namespace", "prod"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["metadata"]["namespace"] for d in docs} == {"prod"}
    for doc in docs:
        validate(doc)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert all(set(s["stringData"].values()) == {"******"} for s in secrets), "Secrets redacted by default"
    assert main(["render", str(path), "--secrets"]) == 0
    shown = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Secret"]
    assert shown[0]["stringData"] == {"token": "tok-1234567"}

    assert main(["render", "--group", "fraud", "fraud_blue=90", "fraud_green=10"]) == 0
    route = by_kind(list(yaml.safe_load_all(capsys.readouterr().out)))["HTTPRoute"]
    validate(route)
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    assert main(["render", "--group", "fraud", "fraud_blue=ninety"]) == 1
    assert "expected MEMBER=WEIGHT" in capsys.readouterr().err
    assert main(["render"]) == 1


def test_example_dag_plan_renders_valid_manifests() -> None:
    from airflow_eas.dags import load_plan

    plan = load_plan(Path(__file__).parents[3] / "dags" / "eas_kubernetes_canary.yaml")
    spec = parse_spec({**plan.service, "name": "ranker_green", "metadata": {**plan.service["metadata"],
                                                                           "group": plan.group}})
    docs = m.service_manifests(spec, SETTINGS, token="t" * 16)
    for doc in docs:
        validate(doc)
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    assert pod["tolerations"][0]["key"] == "spot", "the spot entry is tolerated"


def test_role_is_a_valid_role_granting_every_kind_the_platform_touches() -> None:
    from airflow_eas.platform.kubernetes.api import RESOURCES

    roles = list(yaml.safe_load_all((Path(__file__).parents[3] / "deploy" / "kubernetes" / "role.yaml").read_text()))
    for role in roles:
        kubernetes_validate.validate(role, KUBE_VERSION, strict=True)
    granted = {r for role in roles for rule in role["rules"] for r in rule["resources"]}
    assert {plural for _, plural in RESOURCES.values()} <= granted | {"pods"}
    assert "pods/log" in granted
    assert not any("*" in rule["verbs"] or "update" in rule["verbs"] for role in roles for rule in role["rules"])
