"""The control plane's REST calls as data: what each sends, and how its answer is read.

Both HTTP clients of ``eas server`` -- :class:`~airflow_eas.platform.client.EasClient`
(sync, ``requests``) and :class:`~airflow_eas.platform.async_client.AsyncEasClient`
(async, ``httpx``, for the triggers) -- build their requests here and read the answers
here, so a path, a body or an error mapping is written once; each client is only a transport.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from airflow_eas.errors import EasError, InvalidSpec, NotFound, PlatformUnavailable
from airflow_eas.platform.base import GroupInfo, GuardSettings, Lease, Metrics, Series, ServiceInfo
from airflow_eas.spec import ServiceSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One control-plane call.

    :param method: the HTTP method
    :param path: the path under the control plane's base URL
    :param read: the answer's JSON body (None when empty) -> the value the call returns
    :param json: the request's JSON body
    :param params: the query string
    :param none_if_missing: a 404 answers None instead of raising NotFound
    """

    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] | None = None
    none_if_missing: bool = False


def base_url(endpoint: str) -> str:
    """The control plane's base URL from what a user typed (``host:port`` gets ``http://``)."""
    if not endpoint:
        raise InvalidSpec("no endpoint: pass --endpoint or set EAS_ENDPOINT")
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint.rstrip("/")


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def answer(call: Call[T], status: int, content_type: str, content: bytes) -> T:
    """The value of ``call`` from its HTTP answer; the server's typed EasError when it is an error."""
    if status >= 400:
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        error = EasError.from_response(
            status, body if isinstance(body, dict) else None, f"{call.method} {call.path}: HTTP {status}"
        )
        if call.none_if_missing and isinstance(error, NotFound):
            return None  # type: ignore[return-value]
        raise error
    if status == 204 or not content:
        return call.read(None)
    if content_type.startswith("application/json"):
        return call.read(json.loads(content))
    return call.read(content.decode())


# What a transport's error says -> the reason a user reads (requests and httpx word them differently).
_REASONS = {
    "Connection refused": "connection refused",
    "All connection attempts failed": "connection refused",
    "timed out": "timed out",
    "Timeout": "timed out",
    "Name or service not known": "name or service not known",
}


def unreachable(endpoint: str, exc: Exception, what: str = "eas server") -> PlatformUnavailable:
    """The error for a call that got no HTTP answer (refused, timed out, no such host)."""
    text = f"{exc} {exc.__class__.__name__}"
    reason = next((r for marker, r in _REASONS.items() if marker in text), exc.__class__.__name__)
    return PlatformUnavailable(f"cannot reach {what} at {endpoint}: {reason}")


def _nothing(_: Any) -> None:
    return None


def as_is(body: Any) -> Any:
    """The answer's JSON itself (a raw call)."""
    return body


# -- services -------------------------------------------------------------------------------------


def create(spec: ServiceSpec) -> Call[ServiceInfo]:
    return Call("POST", "/api/v2/services", ServiceInfo.from_dict, json=spec.to_json())


def modify(spec: ServiceSpec) -> Call[ServiceInfo]:
    return Call("PUT", f"/api/v2/services/{spec.name}", ServiceInfo.from_dict, json=spec.to_json())


def describe(name: str) -> Call[ServiceInfo]:
    return Call("GET", f"/api/v2/services/{name}", ServiceInfo.from_dict)


def list_services() -> Call[list[ServiceInfo]]:
    return Call("GET", "/api/v2/services", lambda body: [ServiceInfo.from_dict(s) for s in body["services"]])


def scale(name: str, instances: int) -> Call[ServiceInfo]:
    return Call("POST", f"/api/v2/services/{name}/scale", ServiceInfo.from_dict, json={"instances": instances})


def start(name: str) -> Call[ServiceInfo]:
    return Call("POST", f"/api/v2/services/{name}/start", ServiceInfo.from_dict)


def stop(name: str) -> Call[ServiceInfo]:
    return Call("POST", f"/api/v2/services/{name}/stop", ServiceInfo.from_dict)


def delete(name: str) -> Call[None]:
    return Call("DELETE", f"/api/v2/services/{name}", _nothing)


def metrics(name: str, window_seconds: int) -> Call[Metrics]:
    return Call("GET", f"/api/v2/services/{name}/metrics", Metrics.from_dict, params={"window": window_seconds})


def series(name: str, window: str) -> Call[Series]:
    return Call("GET", f"/api/v2/services/{name}/series", Series.from_dict, params={"window": window})


def logs(name: str, lines: int) -> Call[str]:
    return Call("GET", f"/api/v2/services/{name}/logs", lambda body: body["logs"], params={"lines": lines})


def endpoint_token(name: str) -> Call[str]:
    return Call("GET", f"/api/v2/endpoints/{name}", lambda body: body["token"])


def asset(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/v2/assets/{name}", dict)


def gateway_url() -> Call[str]:
    return Call("GET", "/api/v2/info", lambda body: body["gateway"])


# -- groups ---------------------------------------------------------------------------------------


def describe_group(group: str) -> Call[GroupInfo]:
    return Call("GET", f"/api/v2/groups/{group}", GroupInfo.from_dict)


def list_groups() -> Call[list[GroupInfo]]:
    return Call("GET", "/api/v2/groups", lambda body: [GroupInfo.from_dict(g) for g in body["groups"]])


def set_traffic(group: str, weights: dict[str, int]) -> Call[GroupInfo]:
    return Call("PUT", f"/api/v2/groups/{group}/traffic", GroupInfo.from_dict, json={"weights": weights})


def acquire_lease(
    group: str, holder: str, ttl_seconds: int, stable: str | None, guard: GuardSettings | None
) -> Call[Lease]:
    body = {"holder": holder, "ttl_seconds": ttl_seconds, "stable": stable, "guard": guard.to_dict() if guard else None}
    return Call("POST", f"/api/v2/groups/{group}/lease", Lease.from_dict, json=body)


def renew_lease(group: str, holder: str, ttl_seconds: int, stable: str | None) -> Call[Lease]:
    body = {"holder": holder, "ttl_seconds": ttl_seconds, "stable": stable}
    return Call("PUT", f"/api/v2/groups/{group}/lease", Lease.from_dict, json=body)


def get_lease(group: str) -> Call[Lease | None]:
    return Call("GET", f"/api/v2/groups/{group}/lease", Lease.from_dict, none_if_missing=True)


def release_lease(group: str, holder: str) -> Call[None]:
    return Call("DELETE", f"/api/v2/groups/{group}/lease", _nothing, params={"holder": holder})


def add_group_event(group: str, level: str, message: str) -> Call[None]:
    return Call("POST", f"/api/v2/groups/{group}/events", _nothing, json={"level": level, "message": message})
