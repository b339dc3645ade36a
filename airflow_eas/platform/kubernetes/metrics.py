"""A member's metrics from Prometheus: the query set, its templates, and the :class:`Metrics` it gives.

The default query set reads the standard metrics of Istio's gateway (Istio implements the
Gateway API), which are per destination Service: ``istio_requests_total`` and
``istio_request_duration_milliseconds`` (a histogram), as reported by the gateway
(``reporter="source"``). Any other implementation works by overriding the templates on the
connection (``prometheus_queries``); docs/kubernetes.md gives Envoy Gateway's.

Templates name ``{service}`` (the member's Kubernetes Service), ``{group}``, ``{namespace}``,
``{window}`` (e.g. ``60s``) and, in ``latency``, ``{quantile}`` (0.5, 0.95, 0.99). They are
replaced literally, so PromQL's own braces need no escaping.
"""

from __future__ import annotations

from airflow_eas.platform.base import Metrics
from airflow_eas.prometheus_query import PrometheusClient

_SELECTOR = 'reporter="source",destination_service_namespace="{namespace}",destination_service_name="{service}"'
DEFAULT_QUERIES: dict[str, str] = {
    "requests": f"sum(increase(istio_requests_total{{{_SELECTOR}}}[{{window}}]))",
    "errors": f'sum(increase(istio_requests_total{{{_SELECTOR},response_code=~"5.."}}[{{window}}]))',
    "latency": (
        "histogram_quantile({quantile}, sum by (le) "
        f"(rate(istio_request_duration_milliseconds_bucket{{{_SELECTOR}}}[{{window}}])))"
    ),
}
QUANTILES = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}


def render(template: str, **values: str) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


class MetricsReader:
    """Reads one member's :class:`Metrics` with a query set (defaults overridden key by key)."""

    def __init__(self, prometheus: PrometheusClient, overrides: dict[str, str] | None = None) -> None:
        self.prometheus = prometheus
        self.queries = {**DEFAULT_QUERIES, **(overrides or {})}

    def queries_for(self, *, service: str, k8s_service: str, group: str, namespace: str, window: int) -> dict:
        values = {"service": k8s_service, "group": group, "namespace": namespace, "window": f"{window}s"}
        out = {key: render(self.queries[key], **values) for key in ("requests", "errors")}
        for name, q in QUANTILES.items():
            out[name] = render(self.queries["latency"], quantile=str(q), **values)
        return out

    def read(self, *, service: str, k8s_service: str, group: str, namespace: str, window: int) -> Metrics:
        queries = self.queries_for(service=service, k8s_service=k8s_service, group=group, namespace=namespace,
                                   window=window)
        # increase() extrapolates to the window's edges: counts come back fractional; requests are whole.
        requests = round(self.prometheus.value(queries["requests"]) or 0)
        errors = min(requests, round(self.prometheus.value(queries["errors"]) or 0))
        latency = {name: None for name in QUANTILES} if not requests else {
            name: _ms(self.prometheus.value(queries[name])) for name in QUANTILES
        }
        return Metrics(service=service, window_seconds=window, requests=requests, errors=errors,
                       rps=round(requests / window, 3), **latency)


def _ms(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, 3)
