"""One EAS service spec -> the Kubernetes objects that run it (pure functions, no API calls).

A member is a Deployment + a ClusterIP Service + an HTTPRoute for ``/api/predict/<service>``;
a group is one HTTPRoute for ``/api/predict/<group>`` with weighted ``backendRefs``. Object
names are the EAS names with ``_`` turned into ``-``; labels keep the EAS names. ``eas render``
prints exactly what :class:`~airflow_eas.platform.kubernetes.platform.KubernetesPlatform` applies.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from airflow_eas import asset_refs
from airflow_eas.errors import InvalidSpec
from airflow_eas.platform.kubernetes.config import ClusterSettings
from airflow_eas.spec import REDACTED, ServiceSpec, StorageMount, redact_secrets

Manifest = dict[str, Any]

PREFIX = "airflow-eas.io"
SERVICE_LABEL = f"{PREFIX}/service"
GROUP_LABEL = f"{PREFIX}/group"
VERSION_LABEL = f"{PREFIX}/version"
SPEC_ANNOTATION = f"{PREFIX}/spec"
VERSION_ANNOTATION = f"{PREFIX}/version"
STOPPED_ANNOTATION = f"{PREFIX}/stopped"
MANAGED = {"app.kubernetes.io/managed-by": "airflow-eas"}
GATEWAY_API = "gateway.networking.k8s.io/v1"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
MODEL_SERVER_PORT = 8000
SERVICE_PORT = 80
SPEC_DIR = "/etc/eas"
CACHE_DIR = "/var/cache/eas"
PROGRESS_DEADLINE_SECONDS = 600


def k8s_name(name: str) -> str:
    """The object name of an EAS service or group (DNS-1035 label: ``_`` becomes ``-``)."""
    out = name.replace("_", "-")
    if len(out) > 63:
        raise InvalidSpec(f"name: {name!r} is longer than 63 characters, the limit of Kubernetes object names")
    return out


def token_secret_name(name: str) -> str:
    return f"{k8s_name(name)}-token"


def credentials_secret_name(name: str) -> str:
    return f"{k8s_name(name)}-credentials"


def spec_config_map_name(name: str, version: int) -> str:
    # One per version: a pod of the old version restarting mid-rollout still loads its own spec.
    return f"{k8s_name(name)}-spec-v{version}"


def _meta(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {**MANAGED, **labels}}
    if annotations:
        meta["annotations"] = annotations
    return meta


def member_labels(spec: ServiceSpec) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": k8s_name(spec.name), SERVICE_LABEL: spec.name}
    if spec.group:
        labels[GROUP_LABEL] = spec.group
    return labels


def stored_spec(spec: ServiceSpec) -> dict[str, Any]:
    """The spec as kept in the Deployment's annotation: secrets redacted, the token apart (in a Secret)."""
    data = redact_secrets(spec.to_json())
    data.pop("token", None)
    return data


# -- a member ------------------------------------------------------------------------------------


def service_manifests(
    spec: ServiceSpec, settings: ClusterSettings, *, token: str, version: int = 1, replicas: int | None = None
) -> list[Manifest]:
    """Everything one service needs, in apply order (Secrets and ConfigMap before the Deployment)."""
    refs = asset_refs.references(spec.model_dump(mode="json", exclude_none=True))
    if refs:
        field, name = next(iter(refs.items()))
        raise InvalidSpec(f"{field}: {no_assets(asset_refs.PREFIX + name)}")
    out = [token_secret(spec.name, settings, token)]
    credentials = credentials_secret(spec, settings)
    if credentials:
        out.append(credentials)
    if spec.kind != "image":
        out.append(spec_config_map(spec, settings, version))
    out.append(deployment(spec, settings, version=version, replicas=replicas))
    out.append(cluster_service(spec, settings))
    out.append(http_route(spec.name, settings, {spec.name: 1}, labels=member_labels(spec)))
    if settings.gateway_policy == "envoy-gateway":
        out.append(security_policy(spec.name, settings, labels=member_labels(spec)))
    return out


def no_assets(reference: str) -> str:
    """Why ``asset:NAME`` means nothing on a cluster."""
    return (f"{reference}: a Kubernetes cluster has no asset registry (assets are registered on an eas server); "
            "give the image reference or data URI itself")


def token_secret(name: str, settings: ClusterSettings, token: str, *, group: bool = False) -> Manifest:
    """The one token of a service or group; the gateway policy reads it (its only key is the token)."""
    labels = {GROUP_LABEL: name} if group else {SERVICE_LABEL: name}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(token_secret_name(name), settings.namespace, labels),
        "type": "Opaque",
        "stringData": {"token": token},
    }


def credentials_secret(spec: ServiceSpec, settings: ClusterSettings) -> Manifest | None:
    """Git credentials of the spec's storage, so the pod spec only references them."""
    data: dict[str, str] = {}
    for i, mount in enumerate(spec.storage):
        if mount.git and mount.git.username:
            data[f"git-{i}-username"] = mount.git.username
        if mount.git and mount.git.password:
            data[f"git-{i}-password"] = mount.git.password
    if not data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(credentials_secret_name(spec.name), settings.namespace, {SERVICE_LABEL: spec.name}),
        "type": "Opaque",
        "stringData": data,
    }


def spec_config_map(spec: ServiceSpec, settings: ClusterSettings, version: int = 1) -> Manifest:
    """The spec the model server loads (no token, passwords redacted: the model server needs neither)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec_config_map_name(spec.name, version), settings.namespace,
                          {SERVICE_LABEL: spec.name, VERSION_LABEL: str(version)}),
        "data": {"spec.json": json.dumps(stored_spec(spec), indent=2, sort_keys=True)},
    }


def deployment(
    spec: ServiceSpec, settings: ClusterSettings, *, version: int = 1, replicas: int | None = None
) -> Manifest:
    name = k8s_name(spec.name)
    strategy = spec.metadata.rolling_strategy
    if strategy.max_surge == 0 and strategy.max_unavailable == 0:
        raise InvalidSpec("metadata.rolling_strategy: max_surge and max_unavailable cannot both be 0 on Kubernetes")
    pod_labels = {**member_labels(spec), VERSION_LABEL: str(version)}
    volumes, mounts, init = _storage(spec, settings)
    container = _image_container(spec) if spec.kind == "image" else _model_server_container(spec, settings)
    container["volumeMounts"] = container.get("volumeMounts", []) + mounts
    if not container["volumeMounts"]:
        del container["volumeMounts"]
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"enableServiceLinks": False, "containers": [container]}
    if init:
        pod["initContainers"] = init
    if spec.kind != "image":
        volumes = [
            {"name": "spec", "configMap": {"name": spec_config_map_name(spec.name, version)}},
            {"name": "cache", "emptyDir": {}},
            *volumes,
        ]
    if volumes:
        pod["volumes"] = volumes
    affinity, tolerations = _placement(spec, settings)
    if affinity:
        pod["affinity"] = affinity
    if tolerations:
        pod["tolerations"] = tolerations
    annotations = {SPEC_ANNOTATION: json.dumps(stored_spec(spec), sort_keys=True), VERSION_ANNOTATION: str(version)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, settings.namespace, {**member_labels(spec), VERSION_LABEL: str(version)},
                          annotations),
        "spec": {
            "replicas": spec.metadata.instance if replicas is None else replicas,
            "selector": {"matchLabels": {SERVICE_LABEL: spec.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": strategy.max_surge, "maxUnavailable": strategy.max_unavailable},
            },
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    }


def _model_server_container(spec: ServiceSpec, settings: ClusterSettings) -> dict[str, Any]:
    # The model server answers /ready with 200 only after loading and warm-up, as on one host.
    return {
        "name": "model-server",
        "image": settings.model_server_image,
        "command": ["python", "-m", "airflow_eas.serving", "--spec", f"{SPEC_DIR}/spec.json"],
        "env": [
            {"name": "PORT", "value": str(MODEL_SERVER_PORT)},
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "EAS_MOUNTS", "value": "{}"},
            {"name": "EAS_CACHE_DIR", "value": CACHE_DIR},
        ],
        "ports": [{"name": "http", "containerPort": MODEL_SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "cache", "mountPath": CACHE_DIR},
        ],
    }


def _image_container(spec: ServiceSpec) -> dict[str, Any]:
    c = spec.containers[0]  # type: ignore[index] - kind == "image"
    env = [{"name": e.name, "value": e.value} for e in c.env]
    if not any(e.name == "PORT" for e in c.env):
        env.append({"name": "PORT", "value": str(c.port)})
    container: dict[str, Any] = {
        "name": "main",
        "image": c.image,
        "env": env,
        "ports": [{"name": "http", "containerPort": c.port, "protocol": "TCP"}],
        # An image's paths are its own: ready once it accepts connections on its port.
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "failureThreshold": 3},
    }
    if c.script:
        container["command"] = ["/bin/sh", "-c", c.script]
    elif c.command:
        container["command"] = shlex.split(c.command)
    return container


def _quantity_cpu(cpu: float) -> str:
    millis = round(cpu * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _resources(spec: ServiceSpec) -> dict[str, Any]:
    m = spec.metadata
    amounts: dict[str, str] = {}
    if m.cpu:
        amounts["cpu"] = _quantity_cpu(m.cpu)
    if m.memory:
        amounts["memory"] = f"{m.memory}Mi"
    if m.gpu:
        amounts["nvidia.com/gpu"] = str(m.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _placement(spec: ServiceSpec, settings: ClusterSettings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``cloud.computing.instances`` -> required instance types, preferred in the given order, spot tolerated."""
    instances = spec.cloud.computing.instances if spec.cloud else []
    if not instances:
        return {}, []
    spot_key, spot_value = settings.spot_node_label
    types = list(dict.fromkeys(i.type for i in instances))
    preferred = []
    for rank, inst in enumerate(instances):
        expressions = [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [inst.type]}]
        if inst.spot_price_limit is not None:
            expressions.append({"key": spot_key, "operator": "In", "values": [spot_value]})
        preferred.append({"weight": max(1, 100 - 10 * rank), "preference": {"matchExpressions": expressions}})
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": types}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        }
    }
    tolerations = []
    if any(i.spot_price_limit is not None for i in instances):
        tolerations.append({"key": spot_key, "operator": "Equal", "value": spot_value, "effect": "NoSchedule"})
    return affinity, tolerations


def _storage(spec: ServiceSpec, settings: ClusterSettings) -> tuple[list[dict], list[dict], list[dict]]:
    """(volumes, the main container's mounts, init containers) of ``storage``."""
    volumes: list[dict] = []
    mounts: list[dict] = []
    init: list[dict] = []
    for i, m in enumerate(spec.storage):
        volume = f"storage-{i}"
        read_only = _read_only(m)
        mounts.append({"name": volume, "mountPath": m.mount_path, **({"readOnly": True} if read_only else {})})
        if m.nfs:
            volumes.append({"name": volume, "nfs": {"server": m.nfs.server, "path": m.nfs.path,
                                                    "readOnly": m.nfs.readOnly}})
        elif m.local:
            if not settings.allow_host_path:
                raise InvalidSpec(
                    f"storage.{i}.local: hostPath volumes are off on this connection "
                    "(set the extra allow_host_path to true where nodes share that path)"
                )
            volumes.append({"name": volume, "hostPath": {"path": m.local.path, "type": "Directory"}})
        elif m.git:
            volumes.append({"name": volume, "emptyDir": {}})
            init.append(_git_init(spec, i, m, volume, settings))
        elif m.oss:
            volumes.append({"name": volume, "emptyDir": {}})
            init.append(_oss_init(i, m, volume, settings))
    return volumes, mounts, init


def _read_only(m: StorageMount) -> bool:
    if m.git:
        return True
    source = m.oss or m.nfs or m.local
    return bool(source and source.readOnly)


# Credentials reach git through a credential helper reading the environment (filled from the Secret),
# so they are on no command line, in no .git/config and nowhere in the pod spec.
GIT_CLONE_SCRIPT = (
    "set -eu\n"
    "git -c credential.helper='!f() { echo \"username=${GIT_USERNAME:-}\"; echo \"password=${GIT_PASSWORD:-}\"; }; f' "
    'clone ${GIT_BRANCH:+--branch "$GIT_BRANCH"} -- "$GIT_REPO" /mnt/storage\n'
    'if [ -n "${GIT_COMMIT:-}" ]; then git -C /mnt/storage checkout --detach "$GIT_COMMIT"; fi\n'
)


def _git_init(spec: ServiceSpec, i: int, m: StorageMount, volume: str, settings: ClusterSettings) -> dict:
    git = m.git
    assert git is not None
    env: list[dict[str, Any]] = [{"name": "GIT_REPO", "value": git.repo}]
    if git.branch:
        env.append({"name": "GIT_BRANCH", "value": git.branch})
    if git.commit:
        env.append({"name": "GIT_COMMIT", "value": git.commit})
    secret = credentials_secret_name(spec.name)
    for field, var in (("username", "GIT_USERNAME"), ("password", "GIT_PASSWORD")):
        if getattr(git, field):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": f"git-{i}-{field}"}}})
    return {
        "name": f"git-{i}",
        "image": settings.git_image,
        "command": ["/bin/sh", "-c", GIT_CLONE_SCRIPT],
        "env": env,
        "volumeMounts": [{"name": volume, "mountPath": "/mnt/storage"}],
    }


def _oss_init(i: int, m: StorageMount, volume: str, settings: ClusterSettings) -> dict:
    oss = m.oss
    assert oss is not None
    env = [{"name": "EAS_OSS_ENDPOINT", "value": oss.endpoint}] if oss.endpoint else []
    return {
        "name": f"oss-{i}",
        # The single host's downloader, run from the model-server image (it holds this package).
        "image": settings.model_server_image,
        "command": ["python", "-m", "airflow_eas.platform.kubernetes.fetch", oss.path, "/mnt/storage"],
        "env": env,
        "envFrom": [{"secretRef": {"name": settings.oss_secret, "optional": True}}],
        "volumeMounts": [{"name": volume, "mountPath": "/mnt/storage"}],
    }


def cluster_service(spec: ServiceSpec, settings: ClusterSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(k8s_name(spec.name), settings.namespace, member_labels(spec)),
        "spec": {
            "type": "ClusterIP",
            "selector": {SERVICE_LABEL: spec.name},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


# -- routes: a member's own path, a group's weighted path -----------------------------------------


def http_route(
    name: str, settings: ClusterSettings, weights: dict[str, int], *, labels: dict[str, str]
) -> Manifest:
    """``/api/predict/<name>`` -> the Services of ``weights`` (the prefix is stripped, as EAS does for images)."""
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _meta(k8s_name(name), settings.namespace, labels),
        "spec": {
            "parentRefs": [{
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": settings.gateway_name,
                "namespace": settings.route_gateway_namespace,
            }],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": f"/api/predict/{name}"}}],
                "filters": [{
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
                }],
                "backendRefs": backend_refs(weights),
            }],
        },
    }


def backend_refs(weights: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"group": "", "kind": "Service", "name": k8s_name(member), "port": SERVICE_PORT, "weight": weight}
        for member, weight in sorted(weights.items())
    ]


def group_manifests(group: str, weights: dict[str, int], settings: ClusterSettings, *, token: str) -> list[Manifest]:
    labels = {GROUP_LABEL: group}
    out = [token_secret(group, settings, token, group=True), http_route(group, settings, weights, labels=labels)]
    if settings.gateway_policy == "envoy-gateway":
        out.append(security_policy(group, settings, labels=labels))
    return out


def security_policy(name: str, settings: ClusterSettings, *, labels: dict[str, str]) -> Manifest:
    """Envoy Gateway's API-key check of the route: ``Authorization`` must be the token in the Secret."""
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": _meta(k8s_name(name), settings.namespace, labels),
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": k8s_name(name)}],
            "apiKeyAuth": {
                "credentialRefs": [{"group": "", "kind": "Secret", "name": token_secret_name(name)}],
                "extractFrom": [{"headers": ["Authorization"]}],
            },
        },
    }


def redact_manifest(manifest: Manifest) -> Manifest:
    """A manifest as printed for review: Secret values replaced (``eas render --secrets`` keeps them)."""
    if manifest.get("kind") != "Secret":
        return manifest
    return {**manifest, "stringData": {k: REDACTED for k in manifest.get("stringData", {})}}
