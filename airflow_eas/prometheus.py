"""Reading Prometheus: one instant query, one number (the shared client of anything that reads Prometheus).

:func:`query_scalar` asks ``<url>/api/v1/query`` and answers the query's single value:

- ``None`` when the query has no data (an empty vector, NaN): the caller decides what
  "no data" means (for an analysis: Inconclusive, never a pass);
- :class:`~airflow_eas.errors.PlatformUnavailable` when Prometheus cannot be reached or
  answers 5xx (the metrics source is down: an Error, not a bad canary);
- :class:`~airflow_eas.errors.InvalidSpec` when Prometheus rejects the query, or the query
  gives several series (aggregate it, e.g. ``sum(...)``): a mistake in the plan.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from airflow_eas.errors import InvalidSpec, PlatformUnavailable

__all__ = ["query_scalar"]


def query_scalar(url: str, promql: str, timeout: float = 10.0) -> float | None:
    """The value of the instant query ``promql`` at Prometheus ``url`` (None: no data)."""
    endpoint = f"{url.rstrip('/')}/api/v1/query"
    try:
        resp = httpx.get(endpoint, params={"query": promql}, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise PlatformUnavailable(f"cannot reach Prometheus at {url}: {exc.__class__.__name__}") from None
    if resp.status_code >= 500:
        raise PlatformUnavailable(f"Prometheus at {url} answered HTTP {resp.status_code}")
    try:
        body: dict[str, Any] = resp.json()
    except ValueError:
        raise PlatformUnavailable(f"Prometheus at {url} answered HTTP {resp.status_code} without JSON") from None
    if body.get("status") != "success":
        raise InvalidSpec(f"Prometheus rejected the query {promql!r}: {body.get('error') or resp.status_code}")
    return _scalar(body.get("data") or {}, promql)


def _scalar(data: dict[str, Any], promql: str) -> float | None:
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        return _number(result[1]) if result else None
    if kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            raise InvalidSpec(
                f"the query {promql!r} gives {len(result)} series; aggregate it to one (e.g. sum(...) or max(...))"
            )
        return _number(result[0]["value"][1])
    raise InvalidSpec(f"the query {promql!r} gives a {kind}; an instant vector or scalar is needed")


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) else value
