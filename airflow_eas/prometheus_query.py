"""Instant PromQL queries over Prometheus's HTTP API, errors as typed :class:`EasError`.

Shared by every reader of Prometheus (the Kubernetes platform's metrics, analysis custom
metrics). An unreachable or failing Prometheus is :class:`PlatformUnavailable` (the analysis
says Error, not Failed); a query Prometheus refuses is :class:`InvalidSpec`; an empty result
is no data (``None`` / ``[]``), never zero dressed up as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import requests

from airflow_eas.errors import InvalidSpec, PlatformUnavailable


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusClient:
    """``GET <url>/api/v1/query`` for one instant vector or scalar.

    :param url: Prometheus's base URL, e.g. ``http://prometheus.monitoring:9090``
    :param timeout: seconds for one query (also sent as the server-side ``timeout``)
    """

    def __init__(self, url: str, *, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        if not url:
            raise InvalidSpec("no Prometheus URL: set prometheus_url on the connection")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def query(self, promql: str) -> list[Sample]:
        """The samples of an instant query, NaN values dropped (a ratio of nothing is no data)."""
        try:
            resp = self.session.get(
                f"{self.url}/api/v1/query", params={"query": promql, "timeout": f"{self.timeout:g}s"},
                timeout=self.timeout + 1,
            )
        except requests.RequestException as exc:
            raise PlatformUnavailable(f"cannot reach Prometheus at {self.url}: {exc.__class__.__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            raise PlatformUnavailable(f"Prometheus at {self.url} answered HTTP {resp.status_code}, not JSON") from None
        if resp.status_code == 400 or body.get("errorType") in ("bad_data",):
            raise InvalidSpec(f"Prometheus refused the query {promql!r}: {body.get('error')}")
        if resp.status_code >= 300 or body.get("status") != "success":
            raise PlatformUnavailable(f"Prometheus at {self.url} failed the query: "
                                      f"{body.get('error') or f'HTTP {resp.status_code}'}")
        data = body.get("data") or {}
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            samples = [Sample({}, _number(result[1]))]
        elif kind == "vector":
            samples = [Sample(r.get("metric") or {}, _number(r["value"][1])) for r in result or []]
        else:
            raise InvalidSpec(f"the query {promql!r} gives a {kind}; give one that gives an instant vector")
        return [s for s in samples if not math.isnan(s.value)]

    def value(self, promql: str) -> float | None:
        """The query's one value; ``None`` when there is no data; an error when it gives several series."""
        samples = self.query(promql)
        if not samples:
            return None
        if len(samples) > 1:
            raise InvalidSpec(f"the query {promql!r} gives {len(samples)} series; aggregate it (sum, max, ...) "
                              "to one")
        return samples[0].value


def _number(raw: str) -> float:
    return float(raw)  # Prometheus sends "NaN", "+Inf" as strings float() reads
