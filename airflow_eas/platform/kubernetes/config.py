"""What a ``kubernetes`` connection says beyond the cluster itself: gateway, Prometheus, images.

The cluster (kubeconfig, context, namespace, in-cluster) is read by the cncf-kubernetes
``KubernetesHook`` or by :meth:`KubernetesPlatform.from_kubeconfig`; everything else comes
from the connection's extras, validated here once with one clear error per unknown key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_eas.errors import InvalidSpec

DEFAULT_MODEL_SERVER_IMAGE = "airflow-eas/model-server:latest"
DEFAULT_GIT_IMAGE = "alpine/git:2.45.2"
DEFAULT_GATEWAY = "eas-gateway"
# The node label a cloud puts on its spot / preemptible nodes (docs/kubernetes.md lists them).
DEFAULT_SPOT_LABEL = "karpenter.sh/capacity-type=spot"

# Extras of the cncf-kubernetes connection itself, read by KubernetesHook, not by us.
HOOK_EXTRAS = frozenset({
    "in_cluster", "kube_config_path", "kube_config", "namespace", "cluster_context",
    "disable_verify_ssl", "disable_tcp_keepalive", "xcom_sidecar_container_image",
    "xcom_sidecar_container_resources", "xcom_sidecar_container_security_context",
})


@dataclass
class ClusterSettings:
    """The cluster-side choices of one connection (extras keep these names).

    :param namespace: where services live (the hook's ``namespace``; default ``default``)
    :param gateway_name: the Gateway every HTTPRoute attaches to
    :param gateway_namespace: the Gateway's namespace (default: ``namespace``)
    :param gateway_address: the Gateway's base URL as clients reach it (for ``invoke``)
    :param prometheus_url: Prometheus's base URL (metrics)
    :param prometheus_queries: PromQL templates overriding the default query set by key
        (``requests``, ``errors``, ``latency``); see :mod:`.metrics`
    :param model_server_image: the image processor deployments run
    :param git_image: the image of the init container that clones git storage
    :param spot_label: ``KEY=VALUE`` of the node label marking spot nodes
    :param allow_host_path: let ``local`` storage become a hostPath volume (off by default)
    :param oss_secret: the Secret holding ``EAS_OSS_ACCESS_KEY_ID`` / ``EAS_OSS_ACCESS_KEY_SECRET``
        (and optionally ``EAS_OSS_ENDPOINT``) for ``oss`` storage
    :param gateway_policy: ``envoy-gateway`` emits a SecurityPolicy enforcing tokens; ``none`` emits none
    """

    namespace: str = "default"
    gateway_name: str = DEFAULT_GATEWAY
    gateway_namespace: str | None = None
    gateway_address: str | None = None
    prometheus_url: str | None = None
    prometheus_queries: dict[str, str] = field(default_factory=dict)
    model_server_image: str = DEFAULT_MODEL_SERVER_IMAGE
    git_image: str = DEFAULT_GIT_IMAGE
    spot_label: str = DEFAULT_SPOT_LABEL
    allow_host_path: bool = False
    oss_secret: str = "eas-oss"
    gateway_policy: str = "envoy-gateway"

    def __post_init__(self) -> None:
        if "=" not in self.spot_label:
            raise InvalidSpec(f"spot_label: {self.spot_label!r} must be KEY=VALUE, e.g. {DEFAULT_SPOT_LABEL}")
        if self.gateway_policy not in ("envoy-gateway", "none"):
            raise InvalidSpec(f"gateway_policy: {self.gateway_policy!r} must be envoy-gateway or none")
        unknown = sorted(set(self.prometheus_queries) - {"requests", "errors", "latency"})
        if unknown:
            raise InvalidSpec(f"prometheus_queries: unknown key(s) {', '.join(unknown)}; allowed: errors, latency, "
                              "requests")

    @property
    def route_gateway_namespace(self) -> str:
        return self.gateway_namespace or self.namespace

    @property
    def spot_node_label(self) -> tuple[str, str]:
        key, _, value = self.spot_label.partition("=")
        return key, value

    @classmethod
    def from_extras(cls, extras: dict[str, Any], *, namespace: str | None = None) -> ClusterSettings:
        """Settings from connection extras; the hook's own keys are skipped, unknown keys refused."""
        extras = {k.removeprefix("extra__kubernetes__"): v for k, v in extras.items() if v not in (None, "")}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(extras) - names - HOOK_EXTRAS)
        if unknown:
            raise InvalidSpec(
                f"kubernetes connection: unknown extra(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}"
            )
        values = {k: v for k, v in extras.items() if k in names and k != "namespace"}
        if isinstance(values.get("prometheus_queries"), str):
            try:
                values["prometheus_queries"] = json.loads(values["prometheus_queries"])
            except json.JSONDecodeError as exc:
                raise InvalidSpec(f"prometheus_queries: not valid JSON: {exc}") from None
        if "allow_host_path" in values:
            values["allow_host_path"] = str(values["allow_host_path"]).lower() in ("1", "true", "yes")
        return cls(namespace=namespace or "default", **values)
