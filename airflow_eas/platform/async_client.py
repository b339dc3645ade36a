"""``AsyncEasClient``: ``eas server``'s REST API over ``httpx.AsyncClient``, for the triggers.

The calls and the reading of their answers (typed errors included) are
:mod:`airflow_eas.platform.api`'s, shared with the sync
:class:`~airflow_eas.platform.client.EasClient`; this module is only the async transport.
"""

from __future__ import annotations

from typing import TypeVar

import httpx

from airflow_eas.platform import api
from airflow_eas.platform.aio import AsyncPlatform
from airflow_eas.platform.base import Lease, Metrics, ServiceInfo

T = TypeVar("T")


class AsyncEasClient(AsyncPlatform):
    """Async HTTP client of ``eas server`` (the reads of :class:`~airflow_eas.platform.aio.AsyncPlatform`).

    :param endpoint: the control plane's base URL, e.g. ``http://127.0.0.1:8600``
    :param token: the admin token
    :param timeout: seconds to wait for any one call
    """

    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0) -> None:
        self.endpoint = api.base_url(endpoint)
        self.timeout = timeout
        # One connection pool for the trigger's life: a poll every second reuses its connection.
        self._http = httpx.AsyncClient(headers=api.auth_headers(token), timeout=timeout)

    async def _send(self, call: api.Call[T]) -> T:
        try:
            resp = await self._http.request(
                call.method, f"{self.endpoint}{call.path}", json=call.json, params=call.params
            )
        except httpx.HTTPError as exc:
            raise api.unreachable(self.endpoint, exc) from None
        return api.answer(call, resp.status_code, resp.headers.get("content-type", ""), resp.content)

    async def describe(self, name: str) -> ServiceInfo:
        return await self._send(api.describe(name))

    async def logs(self, name: str, lines: int = 100) -> str:
        return await self._send(api.logs(name, lines))

    async def metrics(self, name: str, window_seconds: int = 60) -> Metrics:
        return await self._send(api.metrics(name, window_seconds))

    async def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        return await self._send(api.renew_lease(group, holder, ttl_seconds, stable))

    async def aclose(self) -> None:
        await self._http.aclose()
