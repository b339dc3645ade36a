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
raised here as the same typed :class:`~airflow_eas.errors.EasError`. The calls and the
reading of their answers are :mod:`airflow_eas.platform.api`'s, shared with the async
client of the triggers (:mod:`airflow_eas.platform.async_client`); this module is the
sync transport.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import requests

from airflow_eas.platform import api
from airflow_eas.platform.base import GroupInfo, GuardSettings, Lease, Metrics, Platform, Series, ServiceInfo
from airflow_eas.spec import ServiceSpec

T = TypeVar("T")


class EasClient(Platform):
    """HTTP client of ``eas server``.

    :param endpoint: the control plane's base URL, e.g. ``http://127.0.0.1:8600``
    :param token: the admin token (``DATA_DIR/admin_token``)
    :param timeout: seconds to wait for any one call
    """

    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0) -> None:
        self.endpoint = api.base_url(endpoint)
        self.token = token
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers.update(api.auth_headers(token))
        self._gateway: str | None = None

    @classmethod
    def from_env(cls) -> EasClient:
        return cls(os.environ.get("EAS_ENDPOINT", ""), os.environ.get("EAS_TOKEN", ""))

    # -- transport -------------------------------------------------------------------------

    def _send(self, call: api.Call[T]) -> T:
        try:
            resp = self._session.request(
                call.method, f"{self.endpoint}{call.path}", json=call.json, params=call.params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise api.unreachable(self.endpoint, exc) from None
        return api.answer(call, resp.status_code, resp.headers.get("content-type", ""), resp.content)

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Any REST call, its answer as JSON (tests send bodies no model class would build)."""
        return self._send(api.Call(method, path, api.as_is, json=json, params=params))

    # -- services --------------------------------------------------------------------------

    def create(self, spec: ServiceSpec) -> ServiceInfo:
        return self._send(api.create(spec))

    def modify(self, spec: ServiceSpec) -> ServiceInfo:
        return self._send(api.modify(spec))

    def describe(self, name: str) -> ServiceInfo:
        return self._send(api.describe(name))

    def list(self) -> list[ServiceInfo]:
        return self._send(api.list_services())

    def scale(self, name: str, instances: int) -> ServiceInfo:
        return self._send(api.scale(name, instances))

    def start(self, name: str) -> ServiceInfo:
        return self._send(api.start(name))

    def stop(self, name: str) -> ServiceInfo:
        return self._send(api.stop(name))

    def delete(self, name: str) -> None:
        self._send(api.delete(name))

    def metrics(self, name: str, window_seconds: int = 60) -> Metrics:
        return self._send(api.metrics(name, window_seconds))

    def series(self, name: str, window: str = "15m") -> Series:
        """Points of ``eas server``'s time series (see :mod:`airflow_eas.server.series`), as columns."""
        return self._send(api.series(name, window))

    def logs(self, name: str, lines: int = 100) -> str:
        return self._send(api.logs(name, lines))

    # -- groups ----------------------------------------------------------------------------

    def describe_group(self, group: str) -> GroupInfo:
        return self._send(api.describe_group(group))

    def list_groups(self) -> list[GroupInfo]:
        return self._send(api.list_groups())

    def set_traffic(self, group: str, weights: dict[str, int]) -> GroupInfo:
        return self._send(api.set_traffic(group, weights))

    def acquire_lease(
        self,
        group: str,
        holder: str,
        ttl_seconds: int,
        *,
        stable: str | None = None,
        guard: GuardSettings | None = None,
    ) -> Lease:
        return self._send(api.acquire_lease(group, holder, ttl_seconds, stable, guard))

    def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        return self._send(api.renew_lease(group, holder, ttl_seconds, stable))

    def get_lease(self, group: str) -> Lease | None:
        return self._send(api.get_lease(group))

    def add_group_event(self, group: str, level: str, message: str) -> None:
        self._send(api.add_group_event(group, level, message))

    def asset(self, name: str) -> dict[str, Any]:
        return self._send(api.asset(name))

    def release_lease(self, group: str, holder: str) -> None:
        self._send(api.release_lease(group, holder))

    # -- data plane ------------------------------------------------------------------------

    def gateway_url(self) -> str:
        if self._gateway is None:
            self._gateway = self._send(api.gateway_url())
        return self._gateway

    def invoke(self, name: str, data: bytes | str, *, timeout: float = 30.0) -> tuple[int, bytes]:
        token = self._send(api.endpoint_token(name))
        payload = data.encode() if isinstance(data, str) else data
        try:
            resp = requests.post(
                f"{self.gateway_url()}/api/predict/{name}",
                data=payload,
                headers={"Authorization": token},
                timeout=timeout,
            )
        except requests.RequestException as exc:
            raise api.unreachable(self.gateway_url(), exc, "the gateway") from None
        return resp.status_code, resp.content
