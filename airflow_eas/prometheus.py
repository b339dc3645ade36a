"""Reading Prometheus over its HTTP API: the one client of anything that reads Prometheus.

The Kubernetes platform's metrics and series and the analysis's custom checks all come here.
Errors are typed at this boundary, never leaked:

- :class:`~airflow_eas.errors.PlatformUnavailable` when Prometheus cannot be reached or fails
  to answer (5xx, a timeout, no JSON): the metrics source is down -- an Error, not a bad canary;
- :class:`~airflow_eas.errors.InvalidSpec` when Prometheus refuses the query (a syntax or
  execution error), or :meth:`PrometheusClient.value` gets several series: a mistake in the plan
  or the connection's templates;
- no data is ``None`` / ``[]`` (an empty vector, NaN), never zero dressed up as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from airflow_eas.errors import InvalidSpec, PlatformUnavailable

__all__ = ["PrometheusClient", "Range", "Sample", "query_scalar", "query_scalar_async"]


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels and value."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Range:
    """One series of a range query: its labels and ``(t, value)`` points, ascending, NaN dropped."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class PrometheusClient:
    """Instant (``/api/v1/query``) and range (``/api/v1/query_range``) PromQL queries.

    :param url: Prometheus's base URL, e.g. ``http://prometheus.monitoring:9090``
    :param timeout: seconds for one query (also sent as the server-side ``timeout``)
    """

    def __init__(self, url: str | None, *, timeout: float = 10.0) -> None:
        if not url:
            raise InvalidSpec("no Prometheus URL: set prometheus_url on the connection")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> list[Sample]:
        """The samples of an instant query, NaN values dropped (a ratio of nothing is no data)."""
        return _samples(promql, self._get("query", promql, {}))

    async def query_async(self, promql: str) -> list[Sample]:
        """:meth:`query` on the caller's event loop (a trigger's custom checks)."""
        return _samples(promql, await self._get_async("query", promql, {}))

    def value(self, promql: str) -> float | None:
        """The query's one value; ``None`` when there is no data; InvalidSpec when it gives several series."""
        return _one_value(promql, self.query(promql))

    async def value_async(self, promql: str) -> float | None:
        """:meth:`value` on the caller's event loop."""
        return _one_value(promql, await self.query_async(promql))

    def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[Range]:
        """Each series of ``promql`` evaluated every ``step`` seconds from ``start`` to ``end`` (both included)."""
        data = self._get("query_range", promql, {"start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        if data.get("resultType") != "matrix":
            raise InvalidSpec(f"the range query {promql!r} gives a {data.get('resultType')}, not a matrix")
        out = []
        for r in data.get("result") or []:
            points = [(float(t), float(v)) for t, v in r.get("values") or []]
            out.append(Range(r.get("metric") or {}, [(t, v) for t, v in points if not math.isnan(v)]))
        return out

    def _request(self, endpoint: str, promql: str, params: dict[str, str]) -> dict[str, Any]:
        return {
            "url": f"{self.url}/api/v1/{endpoint}",
            "params": {"query": promql, "timeout": f"{self.timeout:g}s", **params},
            "timeout": self.timeout + 1,
        }

    def _get(self, endpoint: str, promql: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            # trust_env=False: a proxy from the environment must not sit between a worker and its Prometheus.
            resp = httpx.get(**self._request(endpoint, promql, params), trust_env=False)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._data(promql, resp)

    async def _get_async(self, endpoint: str, promql: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                resp = await http.get(**self._request(endpoint, promql, params))
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._data(promql, resp)

    def _unreachable(self, exc: httpx.HTTPError) -> PlatformUnavailable:
        return PlatformUnavailable(f"cannot reach Prometheus at {self.url}: {exc.__class__.__name__}")

    def _data(self, promql: str, resp: httpx.Response) -> dict[str, Any]:
        """The ``data`` of an answer, or the typed error it means."""
        try:
            body: dict[str, Any] = resp.json()
        except ValueError:
            raise PlatformUnavailable(f"Prometheus at {self.url} answered HTTP {resp.status_code}, not JSON") from None
        # 400 bad_data: a syntax error; 422 execution: a query that cannot be evaluated. Both are ours to fix.
        if resp.status_code in (400, 422) or body.get("errorType") in ("bad_data", "execution"):
            raise InvalidSpec(f"Prometheus refused the query {promql!r}: {body.get('error')}")
        if resp.status_code >= 300 or body.get("status") != "success":
            raise PlatformUnavailable(f"Prometheus at {self.url} failed the query: "
                                      f"{body.get('error') or f'HTTP {resp.status_code}'}")
        return body.get("data") or {}


def _samples(promql: str, data: dict[str, Any]) -> list[Sample]:
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        samples = [Sample({}, float(result[1]))] if result else []
    elif kind == "vector":
        samples = [Sample(r.get("metric") or {}, float(r["value"][1])) for r in result or []]
    else:
        raise InvalidSpec(f"the query {promql!r} gives a {kind}; give one that gives an instant vector or scalar")
    return [s for s in samples if not math.isnan(s.value)]


def _one_value(promql: str, samples: list[Sample]) -> float | None:
    if not samples:
        return None
    if len(samples) > 1:
        raise InvalidSpec(f"the query {promql!r} gives {len(samples)} series; aggregate it to one "
                          "(e.g. sum(...) or max(...))")
    return samples[0].value


def query_scalar(url: str, promql: str, timeout: float = 10.0) -> float | None:
    """The one value of the instant query ``promql`` at Prometheus ``url`` (None: no data).

    The shape of an analysis's custom check (a URL and a query per check).
    """
    return PrometheusClient(url, timeout=timeout).value(promql)


async def query_scalar_async(url: str, promql: str, timeout: float = 10.0) -> float | None:
    """:func:`query_scalar` on the caller's event loop (a trigger's custom checks)."""
    return await PrometheusClient(url, timeout=timeout).value_async(promql)
