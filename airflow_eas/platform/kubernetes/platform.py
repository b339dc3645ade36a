"""``KubernetesPlatform``: the :class:`Platform` on a cluster, with Kubernetes as the engine.

Nothing here runs a loop or a controller: every call reads or writes API objects (see
:mod:`.manifests`) and the cluster's own controllers, a Gateway API implementation and
Prometheus do the rest.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import requests

from airflow_eas.errors import Conflict, EasError, InvalidSpec, NotFound, PlatformUnavailable
from airflow_eas.platform.base import (
    SERIES_WINDOWS,
    Event,
    GroupInfo,
    GroupMember,
    GuardSettings,
    Lease,
    Metrics,
    Platform,
    Series,
    ServiceInfo,
)
from airflow_eas.platform.kubernetes import lease as leases
from airflow_eas.platform.kubernetes import manifests as m
from airflow_eas.platform.kubernetes.api import KubeApi
from airflow_eas.platform.kubernetes.config import ClusterSettings
from airflow_eas.platform.kubernetes.metrics import MetricsReader
from airflow_eas.platform.kubernetes.status import observe, timestamp
from airflow_eas.prometheus import PrometheusClient
from airflow_eas.spec import REDACTED, ServiceSpec, parse_spec

MAX_EVENTS = 20
EVENT_LEVELS = ("info", "warning", "error")
LEVEL_ANNOTATION = f"{m.PREFIX}/level"
ROLLOUT_REASON = "EasRollout"  # the reason of the rollouts' own events on a group's HTTPRoute


class KubernetesPlatform(Platform):
    """EAS services as Deployments, groups as weighted HTTPRoutes, leases as Leases.

    :param api_client: an authenticated ``kubernetes.client.ApiClient``
    :param settings: the connection's cluster-side choices (namespace, gateway, Prometheus, images)
    :param timeout: seconds for any one API call
    """

    def __init__(self, api_client: Any, settings: ClusterSettings, *, timeout: float = 30.0) -> None:
        self.api = KubeApi(api_client, timeout=timeout)
        self.settings = settings
        self.ns = settings.namespace
        self._gateway: str | None = settings.gateway_address.rstrip("/") if settings.gateway_address else None

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_airflow_connection(cls, conn_id: str) -> KubernetesPlatform:
        """From a ``kubernetes`` connection, through the cncf-kubernetes provider's ``KubernetesHook``."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        hook = KubernetesHook(conn_id=conn_id)
        settings = ClusterSettings.from_extras(dict(hook.conn_extras or {}), namespace=hook.get_namespace())
        return cls(hook.api_client, settings)

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None, namespace: str | None = None,
        extras: dict[str, Any] | None = None,
    ) -> KubernetesPlatform:
        """Without Airflow: a kubeconfig (default ``$KUBECONFIG`` or ``~/.kube/config``) and its context."""
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            client = config.new_client_from_config(config_file=path, context=context)
            if namespace is None:
                _, active = config.list_kube_config_contexts(config_file=path)
                if context:
                    contexts, _ = config.list_kube_config_contexts(config_file=path)
                    active = next((c for c in contexts if c["name"] == context), active)
                namespace = (active or {}).get("context", {}).get("namespace")
        except (ConfigException, OSError) as exc:
            raise InvalidSpec(f"kubeconfig {path or '~/.kube/config'}: {exc}") from None
        return cls(client, ClusterSettings.from_extras(extras or {}, namespace=namespace))

    # -- services --------------------------------------------------------------------------

    def create(self, spec: ServiceSpec) -> ServiceInfo:
        name = m.k8s_name(spec.name)
        if self.api.find("Deployment", self.ns, name):
            raise Conflict(f"service {spec.name!r} already exists")
        if self.api.find("HTTPRoute", self.ns, name):
            raise Conflict(f"the name {spec.name!r} is taken by a group; choose another service name")
        if spec.group:
            self._check_group_name(spec.group)
        token = spec.token or secrets.token_urlsafe(24)
        for manifest in m.service_manifests(spec, self.settings, token=token, version=1):
            self.api.apply(manifest)
        if spec.group:
            self._join(spec.group, spec.name)
        self._event(spec.name, "Normal", "Created", f"service created with {spec.metadata.instance} instance(s)")
        return self.describe(spec.name)

    def modify(self, spec: ServiceSpec) -> ServiceInfo:
        current = self._deployment(spec.name)
        old = self._stored_spec(current)
        version = self._version(current)
        spec = self._restore_credentials(spec, old)
        token = spec.token or self._secret_value(m.token_secret_name(spec.name), "token")
        unchanged = (
            m.stored_spec(spec) == m.stored_spec(old)
            and (spec.token is None or token == self._token(spec))
            and self._credentials(spec.name) == (m.credentials_secret(spec, self.settings) or {}).get("stringData", {})
        )
        if unchanged and not self._failed(current):
            return self.describe(spec.name)  # a retried deploy is a no-op
        if spec.group:
            self._check_group_name(spec.group)
        stopped = int((current.get("spec") or {}).get("replicas", 0)) == 0 and old.metadata.instance > 0
        replicas = 0 if stopped else None
        previous = {
            "Deployment": m.deployment(old, self.settings, version=version, replicas=replicas),
        }
        new_version = version + 1
        for manifest in m.service_manifests(spec, self.settings, token=token, version=new_version, replicas=replicas):
            self.api.apply(manifest, previous.get(manifest["kind"], _GROUP_LABEL_ONLY))
        # The version before the previous one has no pods left to load its spec (the rollout before
        # this one finished or was replaced): its ConfigMap goes.
        if version > 1:
            self.api.delete("ConfigMap", self.ns, m.spec_config_map_name(spec.name, version - 1))
        if old.group != spec.group:
            if old.group:
                self._leave(old.group, spec.name)
            if spec.group:
                self._join(spec.group, spec.name)
        self._event(spec.name, "Normal", "Updated", f"version {new_version}: rolling update started")
        return self.describe(spec.name)

    def describe(self, name: str) -> ServiceInfo:
        return self._info(self._deployment(name), with_events=True)

    def list(self) -> list[ServiceInfo]:
        deployments = self.api.list("Deployment", self.ns, dict(m.MANAGED))
        return [self._info(d, with_events=False) for d in deployments if _service_of(d)]

    def scale(self, name: str, instances: int) -> ServiceInfo:
        if not isinstance(instances, int) or isinstance(instances, bool) or not 0 <= instances <= 64:
            raise InvalidSpec(f"instances: {instances!r} is not a whole number from 0 to 64")
        current = self._deployment(name)
        spec = self._stored_spec(current)
        annotations: dict[str, Any] = {m.STOPPED_ANNOTATION: None}
        if instances > 0:
            data = m.stored_spec(spec)
            data["metadata"]["instance"] = instances
            annotations[m.SPEC_ANNOTATION] = json.dumps(data, sort_keys=True)
        self.api.patch("Deployment", self.ns, m.k8s_name(name),
                       {"metadata": {"annotations": annotations}, "spec": {"replicas": instances}})
        self._event(name, "Normal", "Scaled", f"scaled to {instances} instance(s)")
        return self.describe(name)

    def start(self, name: str) -> ServiceInfo:
        spec = self._stored_spec(self._deployment(name))
        wanted = max(1, spec.metadata.instance)
        self.api.patch("Deployment", self.ns, m.k8s_name(name),
                       {"metadata": {"annotations": {m.STOPPED_ANNOTATION: None}}, "spec": {"replicas": wanted}})
        self._event(name, "Normal", "Started", f"started with {wanted} instance(s)")
        return self.describe(name)

    def stop(self, name: str) -> ServiceInfo:
        self._deployment(name)
        self.api.patch("Deployment", self.ns, m.k8s_name(name),
                       {"metadata": {"annotations": {m.STOPPED_ANNOTATION: "true"}}, "spec": {"replicas": 0}})
        self._event(name, "Normal", "Stopped", "stopping: 0 replicas, the spec is kept")
        return self.describe(name)

    def delete(self, name: str) -> None:
        current = self._deployment(name)
        group = self._stored_spec(current).group
        version = self._version(current)
        k8s = m.k8s_name(name)
        for kind, obj in (("SecurityPolicy", k8s), ("HTTPRoute", k8s), ("Service", k8s), ("Deployment", k8s),
                          ("ConfigMap", m.spec_config_map_name(name, version)),
                          ("ConfigMap", m.spec_config_map_name(name, version - 1)),
                          ("Secret", m.credentials_secret_name(name)),
                          ("Secret", m.token_secret_name(name))):
            if kind == "SecurityPolicy" and self.settings.gateway_policy != "envoy-gateway":
                continue
            self.api.delete(kind, self.ns, obj)
        if group:
            self._leave(group, name)

    # -- groups ----------------------------------------------------------------------------

    def describe_group(self, group: str) -> GroupInfo:
        route = self.api.find("HTTPRoute", self.ns, m.k8s_name(group))
        if route is None or _service_of(route):
            raise NotFound(f"group {group!r} not found")
        return self._group_info(group, route)

    def list_groups(self) -> list[GroupInfo]:
        routes = self.api.list("HTTPRoute", self.ns, dict(m.MANAGED))
        return [self._group_info(_group_of(r), r) for r in routes if _group_of(r) and not _service_of(r)]

    def set_traffic(self, group: str, weights: dict[str, int]) -> GroupInfo:
        if not isinstance(weights, dict) or not weights:
            raise InvalidSpec('weights: expected an object of member -> weight, e.g. {"fraud_green": 20}')
        for member, weight in weights.items():
            if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
                raise InvalidSpec(f"weights.{member}: {weight!r} is not a whole number from 0 to 100")
        route = self.api.find("HTTPRoute", self.ns, m.k8s_name(group))
        if route is None or _service_of(route):
            raise NotFound(f"group {group!r} not found")
        members = self._members(group, route)
        unknown = [s for s in weights if s not in members]
        if unknown:
            raise NotFound(f"{unknown[0]!r} is not a member of group {group!r} (members: {', '.join(members)})")
        patched = self._write_weights(route, {**members, **weights})
        for member, weight in weights.items():
            self._event(member, "Normal", "Traffic", f"group {group}: weight set to {weight}")
        return self._group_info(group, patched)

    def acquire_lease(
        self,
        group: str,
        holder: str,
        ttl_seconds: int,
        *,
        stable: str | None = None,
        guard: GuardSettings | None = None,
    ) -> Lease:
        self._check_stable(group, stable)
        if guard is not None:
            guard = guard.check() if stable else None  # a first release has nothing to fall back to
        lease = leases.acquire(self.api, self.ns, group, holder, ttl_seconds, stable=stable, guard=guard)
        self._group_event(group, "info", f"leased to {holder} for {ttl_seconds:g} s; stable member: "
                                         f"{stable or 'none'}" + (", guarded" if guard else ""))
        return lease

    def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        self._check_stable(group, stable)
        return leases.renew(self.api, self.ns, group, holder, ttl_seconds, stable=stable)

    def get_lease(self, group: str) -> Lease | None:
        return leases.get(self.api, self.ns, group)

    def release_lease(self, group: str, holder: str) -> None:
        leases.release(self.api, self.ns, group, holder)

    def add_group_event(self, group: str, level: str, message: str) -> None:
        if level not in EVENT_LEVELS:
            raise InvalidSpec(f"level: {level!r} is not one of {', '.join(EVENT_LEVELS)}")
        if not isinstance(message, str) or not message.strip():
            raise InvalidSpec("message: a non-empty string is required")
        self.describe_group(group)  # NotFound for a group that does not exist, as on one host
        self._create_event("HTTPRoute", m.k8s_name(group), level, message.strip()[:2000])

    def asset(self, name: str) -> dict[str, Any]:
        raise InvalidSpec(m.no_assets(f"asset:{name}"))

    # -- data plane ------------------------------------------------------------------------

    def metrics(self, name: str, window_seconds: int = 60) -> Metrics:
        spec = self._stored_spec(self._deployment(name))
        return self._metrics_reader().read(service=name, k8s_service=m.k8s_name(name), group=spec.group or "",
                                           namespace=self.ns, window=window_seconds)

    def series(self, name: str, window: str = "15m") -> Series:
        if window not in SERIES_WINDOWS:
            raise InvalidSpec(f"window: {window!r} is not one of {', '.join(SERIES_WINDOWS)}")
        deployment = self.api.find("Deployment", self.ns, m.k8s_name(name))
        if deployment is not None and _service_of(deployment) == name:
            members, group = {name: m.k8s_name(name)}, self._stored_spec(deployment).group or ""
        else:
            members = {mb.service: m.k8s_name(mb.service) for mb in self.describe_group(name).members}
            group = name
        seconds = SERIES_WINDOWS[window]
        # As on one host: 10 s points up to an hour, minutes beyond (at most 1,440 points a query).
        step = 10 if seconds <= 3600 else 60
        return self._metrics_reader().series(name=name, members=members, group=group, namespace=self.ns,
                                             window_seconds=seconds, step=step, now=time.time())

    def logs(self, name: str, lines: int = 100) -> str:
        current = self._deployment(name)
        container = "main" if self._stored_spec(current).kind == "image" else "model-server"
        out = []
        for pod in self._pods(name):
            pod_name = pod["metadata"]["name"]
            try:
                text = self.api.pod_log(self.ns, pod_name, container, lines)
            except EasError as exc:
                text = f"(no logs: {exc.message})"
            out.extend(f"[{pod_name}] {line}" for line in text.splitlines())
        return "\n".join(out)

    def gateway_url(self) -> str:
        if self._gateway is None:
            gateway = self.api.get("Gateway", self.settings.route_gateway_namespace, self.settings.gateway_name)
            addresses = (gateway.get("status") or {}).get("addresses") or []
            if not addresses:
                raise PlatformUnavailable(f"Gateway {self.settings.gateway_name} has no address yet; set the "
                                          "gateway_address extra to reach it")
            self._gateway = f"http://{addresses[0]['value']}"
        return self._gateway

    def invoke(self, name: str, data: bytes | str, *, timeout: float = 30.0) -> tuple[int, bytes]:
        if self.api.find("Deployment", self.ns, m.k8s_name(name)):
            token = self._secret_value(m.token_secret_name(name), "token")
        else:
            token = self.describe_group(name).token
        payload = data.encode() if isinstance(data, str) else data
        url = f"{self.gateway_url()}/api/predict/{name}"
        try:
            resp = requests.post(url, data=payload, headers={"Authorization": token}, timeout=timeout)
        except requests.RequestException as exc:
            raise PlatformUnavailable(f"cannot reach the gateway at {url}: {exc.__class__.__name__}") from None
        return resp.status_code, resp.content

    # -- reading ---------------------------------------------------------------------------

    def _metrics_reader(self) -> MetricsReader:
        if not self.settings.prometheus_url:
            raise PlatformUnavailable("no Prometheus: set prometheus_url on the kubernetes connection")
        return MetricsReader(PrometheusClient(self.settings.prometheus_url), self.settings.prometheus_queries)

    def _deployment(self, name: str) -> dict[str, Any]:
        deployment = self.api.find("Deployment", self.ns, m.k8s_name(name))
        if deployment is None or _service_of(deployment) != name:
            raise NotFound(f"service {name!r} not found")
        return deployment

    def _pods(self, name: str) -> list[dict[str, Any]]:
        return self.api.list("Pod", self.ns, {m.SERVICE_LABEL: name})

    @staticmethod
    def _stored_spec(deployment: dict[str, Any]) -> ServiceSpec:
        raw = (deployment["metadata"].get("annotations") or {}).get(m.SPEC_ANNOTATION)
        if not raw:
            raise EasError(f"Deployment {deployment['metadata']['name']} has no {m.SPEC_ANNOTATION} annotation")
        return parse_spec(raw)

    @staticmethod
    def _version(deployment: dict[str, Any]) -> int:
        return int((deployment["metadata"].get("annotations") or {}).get(m.VERSION_ANNOTATION, 1))

    def _failed(self, deployment: dict[str, Any]) -> bool:
        return self._observe(deployment).status == "Failed"

    def _observe(self, deployment: dict[str, Any]):
        name = _service_of(deployment)
        spec = self._stored_spec(deployment)
        port = spec.containers[0].port if spec.kind == "image" else m.MODEL_SERVER_PORT  # type: ignore[index]
        return observe(deployment, self._pods(name), port,
                       lambda pod, container: self.api.pod_log(self.ns, pod, container, 20))

    def _info(self, deployment: dict[str, Any], *, with_events: bool) -> ServiceInfo:
        name = _service_of(deployment)
        spec = self._stored_spec(deployment)
        seen = self._observe(deployment)
        events = self._events(name) if with_events else []
        if seen.reason and with_events:
            level = "error" if seen.status == "Failed" else "warning"
            events.append(Event(time.time(), level, seen.reason))
        try:
            token = self._secret_value(m.token_secret_name(name), "token")
        except NotFound:
            token = ""
        return ServiceInfo(
            name=name, status=seen.status, endpoint=f"{self._gateway_or_blank()}/api/predict/{name}", token=token,
            group=spec.group, instances=seen.wanted, running_instances=seen.running, version=seen.version,
            instance_list=seen.instances, reason=seen.reason, spec=spec.to_json(), events=events,
        )

    def _events(self, name: str, *, group: bool = False) -> list[Event]:
        """A service's events (its Deployment, ReplicaSets and pods), or a group's (its HTTPRoute)."""
        prefix = m.k8s_name(name)
        out = []
        for e in self.api.list("Event", self.ns):
            involved = e.get("involvedObject") or {}
            if (involved.get("kind") == "HTTPRoute") != group:
                continue
            if involved.get("name") != prefix and (group or not (involved.get("name") or "").startswith(prefix + "-")):
                continue
            when = timestamp(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")) or 0.0
            level = ((e.get("metadata") or {}).get("annotations") or {}).get(LEVEL_ANNOTATION)
            if level not in EVENT_LEVELS:
                level = "warning" if e.get("type") == "Warning" else "info"
            out.append(Event(when, level, e.get("message") or e.get("reason") or ""))
        return sorted(out, key=lambda ev: ev.time)[-MAX_EVENTS:]

    def _event(self, name: str, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event on the Deployment: what ``kubectl describe`` and ``eas desc`` show."""
        try:
            self._create_event("Deployment", m.k8s_name(name), "warning" if kind == "Warning" else "info", message,
                               reason=reason)
        except EasError:
            pass  # an event is a courtesy: never fail the change it reports

    def _group_event(self, group: str, level: str, message: str) -> None:
        """A courtesy event on the group's route (there may be no route yet: a first release)."""
        try:
            if self.api.find("HTTPRoute", self.ns, m.k8s_name(group)) is not None:
                self._create_event("HTTPRoute", m.k8s_name(group), level, message)
        except EasError:
            pass

    def _create_event(self, kind: str, obj: str, level: str, message: str, *, reason: str = ROLLOUT_REASON) -> None:
        """A core/v1 Event involving ``kind``/``obj``; its ``level`` (info, warning, error) kept as an annotation.

        Kubernetes knows only Normal and Warning; the annotation keeps "error" apart for ``eas``.
        """
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        api_version = "gateway.networking.k8s.io/v1" if kind == "HTTPRoute" else "apps/v1"
        self.api.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{obj}.{time.time_ns():x}", "namespace": self.ns,
                         "annotations": {LEVEL_ANNOTATION: level}},
            "involvedObject": {"apiVersion": api_version, "kind": kind, "name": obj, "namespace": self.ns},
            "reason": reason, "message": message, "type": "Normal" if level == "info" else "Warning",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "source": {"component": "airflow-eas"},
        })

    def _secret_value(self, secret: str, key: str) -> str:
        obj = self.api.get("Secret", self.ns, secret)
        if key in (obj.get("data") or {}):
            return base64.b64decode(obj["data"][key]).decode()
        return str((obj.get("stringData") or {}).get(key, ""))

    def _credentials(self, name: str) -> dict[str, str]:
        secret = self.api.find("Secret", self.ns, m.credentials_secret_name(name))
        if secret is None:
            return {}
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return data | dict(secret.get("stringData") or {})

    def _token(self, spec: ServiceSpec) -> str:
        return self._secret_value(m.token_secret_name(spec.name), "token")

    def _restore_credentials(self, spec: ServiceSpec, old: ServiceSpec) -> ServiceSpec:
        """Git passwords left REDACTED in an edited spec come back from the credentials Secret, by mount path."""
        data = spec.to_json()
        redacted = [s for s in data.get("storage") or [] if (s.get("git") or {}).get("password") == REDACTED]
        if not redacted:
            return spec
        old_index = {mount.mount_path: i for i, mount in enumerate(old.storage) if mount.git}
        for mount in redacted:
            i = old_index.get(mount["mount_path"])
            if i is None:
                raise InvalidSpec(f"storage {mount['mount_path']}: the password is {REDACTED}, but no earlier "
                                  "version of this service had one there; give it in full")
            mount["git"]["password"] = self._secret_value(m.credentials_secret_name(spec.name), f"git-{i}-password")
        return parse_spec(data)

    # -- groups, inside --------------------------------------------------------------------

    def _check_group_name(self, group: str) -> None:
        if self.api.find("Deployment", self.ns, m.k8s_name(group)):
            raise Conflict(f"group name {group!r} is taken by a service; choose another group name")

    def _members(self, group: str, route: dict[str, Any]) -> dict[str, int]:
        """EAS member name -> weight, from the route's backendRefs (Services are named after members)."""
        names = {m.k8s_name(_service_of(d)): _service_of(d)
                 for d in self.api.list("Deployment", self.ns, {m.GROUP_LABEL: group})}
        out = {}
        for ref in _backend_refs(route):
            if ref.get("name") in names:
                out[names[ref["name"]]] = int(ref.get("weight", 1))
        return out

    def _group_info(self, group: str, route: dict[str, Any]) -> GroupInfo:
        members = [GroupMember(s, w) for s, w in sorted(self._members(group, route).items())]
        try:
            token = self._secret_value(m.token_secret_name(group), "token")
        except NotFound:
            token = ""
        return GroupInfo(group, f"{self._gateway_or_blank()}/api/predict/{group}", token, members,
                         accepted=route_accepted(route, self.settings), events=self._events(group, group=True))

    def _write_weights(self, route: dict[str, Any], weights: dict[str, int]) -> dict[str, Any]:
        """Patch the route's backendRefs only (conditional on its resourceVersion where the server has one)."""
        rules = route["spec"]["rules"]
        rules = [{**rules[0], "backendRefs": m.backend_refs(weights)}, *rules[1:]]
        patch: dict[str, Any] = {"spec": {"rules": rules}}
        version = route["metadata"].get("resourceVersion")
        if version:
            patch["metadata"] = {"resourceVersion": version}
        return self.api.patch("HTTPRoute", self.ns, route["metadata"]["name"], patch)

    def _join(self, group: str, service: str) -> None:
        route = self.api.find("HTTPRoute", self.ns, m.k8s_name(group))
        if route is None:
            for manifest in m.group_manifests(group, {service: 0}, self.settings, token=secrets.token_urlsafe(24)):
                self.api.apply(manifest)
            return
        weights = {ref["name"]: int(ref.get("weight", 1)) for ref in _backend_refs(route)}
        if m.k8s_name(service) not in weights:
            refs = _backend_refs(route) + m.backend_refs({service: 0})
            self._write_refs(route, refs)

    def _leave(self, group: str, service: str) -> None:
        route = self.api.find("HTTPRoute", self.ns, m.k8s_name(group))
        if route is None:
            return
        refs = [r for r in _backend_refs(route) if r.get("name") != m.k8s_name(service)]
        if refs:
            self._write_refs(route, refs)
            return
        g = m.k8s_name(group)
        for kind, obj in (("SecurityPolicy", g), ("HTTPRoute", g), ("Secret", m.token_secret_name(group)),
                          ("Lease", g)):
            if kind == "SecurityPolicy" and self.settings.gateway_policy != "envoy-gateway":
                continue
            self.api.delete(kind, self.ns, obj)

    def _write_refs(self, route: dict[str, Any], refs: list[dict[str, Any]]) -> None:
        rules = route["spec"]["rules"]
        patch: dict[str, Any] = {"spec": {"rules": [{**rules[0], "backendRefs": refs}, *rules[1:]]}}
        version = route["metadata"].get("resourceVersion")
        if version:
            patch["metadata"] = {"resourceVersion": version}
        self.api.patch("HTTPRoute", self.ns, route["metadata"]["name"], patch)

    def _check_stable(self, group: str, stable: str | None) -> None:
        if stable is None:
            return
        route = self.api.find("HTTPRoute", self.ns, m.k8s_name(group))
        members = self._members(group, route) if route is not None and not _service_of(route) else {}
        if not isinstance(stable, str) or stable not in members:
            raise InvalidSpec(f"stable: {stable!r} is not a member of group {group!r}")

    def _gateway_or_blank(self) -> str:
        try:
            return self.gateway_url()
        except EasError:
            return ""


# What an earlier version of the other kinds may have had that the new one lacks: the group label.
_GROUP_LABEL_ONLY: dict[str, Any] = {"metadata": {"labels": {m.GROUP_LABEL: "-"}}}


def route_accepted(route: dict[str, Any], settings: ClusterSettings) -> bool | None:
    """Whether the Gateway accepted this generation of the route (``None``: its controller has not said yet)."""
    generation = (route.get("metadata") or {}).get("generation")
    for parent in (route.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("name") != settings.gateway_name:
            continue
        for condition in parent.get("conditions") or []:
            if condition.get("type") != "Accepted":
                continue
            if generation is not None and condition.get("observedGeneration") not in (None, generation):
                return None  # a verdict on an older generation says nothing about these weights
            return condition.get("status") == "True"
    return None


def _service_of(obj: dict[str, Any]) -> str:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(m.SERVICE_LABEL, "")


def _group_of(obj: dict[str, Any]) -> str:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(m.GROUP_LABEL, "")


def _backend_refs(route: dict[str, Any]) -> list[dict[str, Any]]:
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return list(rules[0].get("backendRefs") or [])
