"""``EasClient``: the :class:`Platform` spoken over HTTP to an ``eas server``.

The REST API (all calls need the admin token, ``Authorization: Bearer <token>``):

=========================================  ==============================================
``POST   /api/v2/services``                create from a spec          -> ServiceInfo
``GET    /api/v2/services``                ``{"services": [ServiceInfo]}``
``GET    /api/v2/services/{name}``         ServiceInfo (spec, instances, events)
``PUT    /api/v2/services/{name}``         modify (rolling update)      -> ServiceInfo
``POST   /api/v2/services/{name}/scale``   ``{"instances": n}``         -> ServiceInfo
``POST   /api/v2/services/{name}/start``   / ``stop``                   -> ServiceInfo
``DELETE /api/v2/services/{name}``
``GET    /api/v2/services/{name}/metrics`` ``?window=60``               -> Metrics
``GET    /api/v2/services/{name}/logs``    ``?lines=100``               -> ``{"logs": str}``
``GET    /api/v2/services/{name}/series``  ``?window=15m|1h|24h``       -> 10-second points, per-instance usage
``GET    /api/v2/groups``                  ``{"groups": [GroupInfo]}``
``GET    /api/v2/groups/{group}``          GroupInfo
``PUT    /api/v2/groups/{group}/traffic``  ``{"weights": {svc: w}}``    -> GroupInfo
``POST   /api/v2/groups/{group}/lease``    ``{"holder", "ttl_seconds", "stable", "guard"}`` -> Lease (409 if held)
``PUT    /api/v2/groups/{group}/lease``    renew ``{"holder", "ttl_seconds", "stable"?}`` -> Lease (410 if revoked)
``GET    /api/v2/groups/{group}/lease``    Lease (held, or revoked with its reason; 404 when free)
``DELETE /api/v2/groups/{group}/lease``    ``?holder=``
``POST   /api/v2/groups/{group}/events``   ``{"level", "message"}``
``GET    /api/v2/endpoints/{name}``        ``{"name", "kind", "url", "token"}`` (service or group)
``GET    /api/v2/info``                    ``{"gateway": url, "version": str}``
``GET    /metrics``                        Prometheus text
=========================================  ==============================================

Errors come back as ``{"code", "message"}`` with the matching HTTP status and are
raised here as the same typed :class:`~airflow_eas.errors.EasError`.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from airflow_eas.errors import EasError, InvalidSpec, NotFound, PlatformUnavailable
from airflow_eas.platform.base import GroupInfo, GuardSettings, Lease, Metrics, Platform, Series, ServiceInfo
from airflow_eas.spec import ServiceSpec


class EasClient(Platform):
    """HTTP client of ``eas server``.

    :param endpoint: the control plane's base URL, e.g. ``http://127.0.0.1:8600``
    :param token: the admin token (``DATA_DIR/admin_token``)
    :param timeout: seconds to wait for any one call
    """

    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0) -> None:
        if not endpoint:
            raise InvalidSpec("no endpoint: pass --endpoint or set EAS_ENDPOINT")
        if "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._gateway: str | None = None

    @classmethod
    def from_env(cls) -> EasClient:
        return cls(os.environ.get("EAS_ENDPOINT", ""), os.environ.get("EAS_TOKEN", ""))

    # -- transport -------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Any:
        url = f"{self.endpoint}{path}"
        try:
            resp = self._session.request(method, url, json=json, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PlatformUnavailable(f"cannot reach eas server at {self.endpoint}: {_reason(exc)}") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise EasError.from_response(resp.status_code, body, f"{method} {path}: HTTP {resp.status_code}")
        if resp.status_code == 204 or not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    # -- services --------------------------------------------------------------------------

    def create(self, spec: ServiceSpec) -> ServiceInfo:
        return ServiceInfo.from_dict(self._call("POST", "/api/v2/services", json=spec.to_json()))

    def modify(self, spec: ServiceSpec) -> ServiceInfo:
        return ServiceInfo.from_dict(self._call("PUT", f"/api/v2/services/{spec.name}", json=spec.to_json()))

    def describe(self, name: str) -> ServiceInfo:
        return ServiceInfo.from_dict(self._call("GET", f"/api/v2/services/{name}"))

    def list(self) -> list[ServiceInfo]:
        return [ServiceInfo.from_dict(s) for s in self._call("GET", "/api/v2/services")["services"]]

    def scale(self, name: str, instances: int) -> ServiceInfo:
        body = self._call("POST", f"/api/v2/services/{name}/scale", json={"instances": instances})
        return ServiceInfo.from_dict(body)

    def start(self, name: str) -> ServiceInfo:
        return ServiceInfo.from_dict(self._call("POST", f"/api/v2/services/{name}/start"))

    def stop(self, name: str) -> ServiceInfo:
        return ServiceInfo.from_dict(self._call("POST", f"/api/v2/services/{name}/stop"))

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/api/v2/services/{name}")

    def metrics(self, name: str, window_seconds: int = 60) -> Metrics:
        body = self._call("GET", f"/api/v2/services/{name}/metrics", params={"window": window_seconds})
        return Metrics.from_dict(body)

    def series(self, name: str, window: str = "15m") -> Series:
        """Points of ``eas server``'s time series (see :mod:`airflow_eas.server.series`), as columns."""
        return Series.from_dict(self._call("GET", f"/api/v2/services/{name}/series", params={"window": window}))

    def logs(self, name: str, lines: int = 100) -> str:
        return self._call("GET", f"/api/v2/services/{name}/logs", params={"lines": lines})["logs"]

    # -- groups ----------------------------------------------------------------------------

    def describe_group(self, group: str) -> GroupInfo:
        return GroupInfo.from_dict(self._call("GET", f"/api/v2/groups/{group}"))

    def list_groups(self) -> list[GroupInfo]:
        return [GroupInfo.from_dict(g) for g in self._call("GET", "/api/v2/groups")["groups"]]

    def set_traffic(self, group: str, weights: dict[str, int]) -> GroupInfo:
        body = self._call("PUT", f"/api/v2/groups/{group}/traffic", json={"weights": weights})
        return GroupInfo.from_dict(body)

    def acquire_lease(
        self,
        group: str,
        holder: str,
        ttl_seconds: int,
        *,
        stable: str | None = None,
        guard: GuardSettings | None = None,
    ) -> Lease:
        body = {
            "holder": holder,
            "ttl_seconds": ttl_seconds,
            "stable": stable,
            "guard": guard.to_dict() if guard else None,
        }
        return Lease.from_dict(self._call("POST", f"/api/v2/groups/{group}/lease", json=body))

    def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        body = {"holder": holder, "ttl_seconds": ttl_seconds, "stable": stable}
        return Lease.from_dict(self._call("PUT", f"/api/v2/groups/{group}/lease", json=body))

    def get_lease(self, group: str) -> Lease | None:
        try:
            return Lease.from_dict(self._call("GET", f"/api/v2/groups/{group}/lease"))
        except NotFound:
            return None

    def add_group_event(self, group: str, level: str, message: str) -> None:
        self._call("POST", f"/api/v2/groups/{group}/events", json={"level": level, "message": message})

    def asset(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/assets/{name}")

    def release_lease(self, group: str, holder: str) -> None:
        self._call("DELETE", f"/api/v2/groups/{group}/lease", params={"holder": holder})

    # -- data plane ------------------------------------------------------------------------

    def gateway_url(self) -> str:
        if self._gateway is None:
            self._gateway = self._call("GET", "/api/v2/info")["gateway"]
        return self._gateway

    def invoke(self, name: str, data: bytes | str, *, timeout: float = 30.0) -> tuple[int, bytes]:
        token = self._token_of(name)
        payload = data.encode() if isinstance(data, str) else data
        try:
            resp = requests.post(
                f"{self.gateway_url()}/api/predict/{name}",
                data=payload,
                headers={"Authorization": token},
                timeout=timeout,
            )
        except requests.RequestException as exc:
            raise PlatformUnavailable(f"cannot reach the gateway at {self.gateway_url()}: {_reason(exc)}") from None
        return resp.status_code, resp.content

    def _token_of(self, name: str) -> str:
        body = self._call("GET", f"/api/v2/endpoints/{name}")
        return body["token"]


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return exc.__class__.__name__
