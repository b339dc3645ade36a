"""A thin REST layer over the official client's ``ApiClient``: plain dicts in and out, typed errors.

Plain dicts (not the generated models) because the Gateway API kinds and the Lease are patched
as JSON merge patches and CRDs have no generated models; the ``ApiClient`` still does the auth
(kubeconfig, token, in-cluster) that ``KubernetesHook`` or ``kubernetes.config`` set up.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from airflow_eas.errors import Conflict, EasError, InvalidSpec, NotFound, PlatformUnavailable, Unauthorized

# kind -> (apiVersion, plural); every kind the platform touches (deploy/kubernetes/role.yaml grants these).
RESOURCES: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "Secret": ("v1", "secrets"),
    "ConfigMap": ("v1", "configmaps"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "Gateway": ("gateway.networking.k8s.io/v1", "gateways"),
    "SecurityPolicy": ("gateway.envoyproxy.io/v1alpha1", "securitypolicies"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
}
MERGE_PATCH = "application/merge-patch+json"


def resource_path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    api_version, plural = RESOURCES[kind]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{root}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class KubeApi:
    """Namespaced calls to one API server.

    :param client: an authenticated ``kubernetes.client.ApiClient``
    :param timeout: seconds for any one call
    """

    def __init__(self, client: ApiClient, *, timeout: float = 30.0) -> None:
        self.client = client
        self.timeout = timeout

    @property
    def host(self) -> str:
        return str(self.client.configuration.host)

    def request(
        self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None,
        content_type: str = "application/json", text: bool = False,
    ) -> Any:
        try:
            resp = self.client.call_api(
                path, method,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "*/*" if text else "application/json"},
                body=body, auth_settings=["BearerToken"], _preload_content=False, _request_timeout=self.timeout,
            )
        except ApiException as exc:
            raise _translate(exc, method, path) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PlatformUnavailable(f"cannot reach the Kubernetes API server at {self.host}: "
                                      f"{exc.__class__.__name__}") from None
        data = resp.data
        if text:
            return data.decode(errors="replace")
        return json.loads(data) if data else None

    # -- verbs ----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", resource_path(kind, namespace, name))

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def list(self, kind: str, namespace: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        items = self.request("GET", resource_path(kind, namespace), query=query).get("items") or []
        # The selector again here: servers filter, but an emulator may not, and a wrong member is worse.
        return [i for i in items if _matches(i, labels or {})]

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return self.request("POST", resource_path(manifest["kind"], meta["namespace"]), body=manifest)

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any], sub: str | None = None) -> dict:
        """A JSON merge patch; a ``metadata.resourceVersion`` in it makes the write conditional (409 if stale)."""
        return self.request("PATCH", resource_path(kind, namespace, name, sub), body=patch, content_type=MERGE_PATCH)

    def delete(self, kind: str, namespace: str, name: str, *, missing_ok: bool = True) -> None:
        try:
            self.request("DELETE", resource_path(kind, namespace, name),
                         body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        except NotFound:
            if not missing_ok:
                raise

    def apply(self, manifest: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the object, or merge-patch it to the manifest (keys that ``previous`` had and it lacks removed)."""
        meta = manifest["metadata"]
        try:
            return self.create(manifest)
        except Conflict:
            patch = merge_diff(previous, manifest) if previous is not None else manifest
            return self.patch(manifest["kind"], meta["namespace"], meta["name"], patch)

    def pod_log(self, namespace: str, pod: str, container: str, lines: int) -> str:
        return self.request("GET", resource_path("Pod", namespace, pod, "log"),
                            query={"container": container, "tailLines": lines}, text=True)


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) taking ``old`` to ``new``: keys ``old`` had and ``new`` lacks become null."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        out[key] = merge_diff(old.get(key), value) if isinstance(value, dict) else value
    return out


def _matches(obj: dict[str, Any], labels: dict[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _translate(exc: ApiException, method: str, path: str) -> EasError:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason or str(exc.status)
    what = f"{method} {path}: {message}"
    if exc.status == 0:
        return PlatformUnavailable(f"cannot reach the Kubernetes API server: {exc.reason}")
    if exc.status == 404:
        return NotFound(what)
    if exc.status == 409:
        return Conflict(what)
    if exc.status in (400, 422):
        return InvalidSpec(f"the API server refused {what}")
    if exc.status in (401, 403):
        return Unauthorized(f"the API server refused {what} (the Role in deploy/kubernetes/role.yaml grants "
                            "what the platform needs)", status=exc.status)
    if exc.status >= 500 or exc.status == 429:
        return PlatformUnavailable(f"the Kubernetes API server failed {what}")
    return EasError(what, status=exc.status)
