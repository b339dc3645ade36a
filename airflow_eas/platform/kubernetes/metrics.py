"""A member's metrics from Prometheus: the query set, its templates, and the :class:`Metrics` it gives.

The default query set reads the standard metrics of Istio's gateway (Istio implements the
Gateway API), which are per destination Service: ``istio_requests_total`` and
``istio_request_duration_milliseconds`` (a histogram), as reported by the gateway
(``reporter="source"``). Any other implementation works by overriding the templates on the
connection (``prometheus_queries``); docs/kubernetes.md gives Envoy Gateway's.

Templates name ``{service}`` (the member's Kubernetes Service), ``{group}``, ``{namespace}``,
``{window}`` (e.g. ``60s``) and, in ``latency``, ``{quantile}`` (0.5, 0.95, 0.99). They are
replaced literally, so PromQL's own braces need no escaping.

:meth:`MetricsReader.series` runs the same templates as range queries for the charts, and
reads the pods' CPU and memory from the kubelet's cAdvisor series where Prometheus has them.
"""

from __future__ import annotations

from collections import defaultdict

from airflow_eas.platform.base import Metrics, Series
from airflow_eas.prometheus import PrometheusClient, Range

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

# A chart's point is the rate over the last minute (at least one step), not over the step alone:
# a gateway scraped every 15-30 s (the usual) leaves a 10 s range with fewer than two samples, no data.
SERIES_LOOKBACK_SECONDS = 60
# The kubelet's cAdvisor series, per container of each pod (container="" and "POD" are the pod's own cgroups).
_PODS = 'namespace="{namespace}",pod=~"{pods}",container!="",container!="POD"'
CPU_QUERY = f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{_PODS}}}[{{window}}])) * 100"
MEMORY_QUERY = f"sum by (pod) (max_over_time(container_memory_working_set_bytes{{{_PODS}}}[{{window}}])) / 1048576"


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

    def series(self, *, name: str, members: dict[str, str], group: str, namespace: str, window_seconds: int,
               step: int, now: float) -> Series:
        """Points every ``step`` seconds over the last ``window_seconds`` of a service, or of a group's ``members``.

        ``members`` maps each EAS service to its Kubernetes Service (one entry for a service).
        A group's requests and errors are its members' sums; its percentiles are the slowest
        member's (quantiles of separate histograms do not add up).
        """
        end = now // step * step
        lookback = max(step, SERIES_LOOKBACK_SECONDS)
        span = {"start": end - window_seconds + step, "end": end, "step": step}
        totals: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0])
        slowest: dict[str, dict[float, float]] = {column: {} for column in QUANTILES}
        for service, k8s_service in members.items():
            queries = self.queries_for(service=service, k8s_service=k8s_service, group=group, namespace=namespace,
                                       window=lookback)
            for index, key in enumerate(("requests", "errors")):
                for t, value in _points(self.prometheus.query_range(queries[key], **span)):
                    totals[t][index] += value
            for column in QUANTILES:
                for t, value in _points(self.prometheus.query_range(queries[column], **span)):
                    if _ms(value) is not None:
                        slowest[column][t] = max(value, slowest[column].get(t, value))
        points: dict[str, list] = {c: [] for c in ("t", "requests", "errors", "rps", "error_rate", *QUANTILES)}
        for t in sorted(totals):
            # increase() over the lookback, scaled to one step (and extrapolated: whole requests are rounded).
            requests = round(totals[t][0] * step / lookback)
            if requests <= 0:
                continue  # a step without traffic has no point, as on one host
            errors = min(requests, round(totals[t][1] * step / lookback))
            points["t"].append(int(t))
            points["requests"].append(requests)
            points["errors"].append(errors)
            points["rps"].append(round(requests / step, 3))
            points["error_rate"].append(round(errors / requests, 6))
            for column in QUANTILES:
                points[column].append(_ms(slowest[column].get(t)))
        pods = "|".join(f"{k8s}-[a-z0-9]+-[a-z0-9]+" for k8s in members.values())
        usage = {"namespace": namespace, "pods": pods, "window": f"{lookback}s"}
        cpu = self.prometheus.query_range(render(CPU_QUERY, **usage), **span)
        memory = self.prometheus.query_range(render(MEMORY_QUERY, **usage), **span)
        return Series(name=name, window_seconds=window_seconds, step_seconds=step, points=points,
                      instances=_by_pod(cpu, memory))


def _points(ranges: list[Range]) -> list[tuple[float, float]]:
    return [point for r in ranges for point in r.points]


def _by_pod(cpu: list[Range], memory: list[Range]) -> dict[str, dict[str, list]]:
    """Per pod: ``t``, ``cpu_percent``, ``memory_mb`` columns (None where one of the two has no sample)."""
    rows: dict[str, dict[float, list[float | None]]] = defaultdict(dict)
    for column, ranges in enumerate((cpu, memory)):
        for r in ranges:
            pod = r.labels.get("pod")
            if not pod:
                continue
            for t, value in r.points:
                rows[pod].setdefault(t, [None, None])[column] = round(value, 3)
    return {
        pod: {"t": [int(t) for t in sorted(by_t)], "cpu_percent": [by_t[t][0] for t in sorted(by_t)],
              "memory_mb": [by_t[t][1] for t in sorted(by_t)]}
        for pod, by_t in sorted(rows.items())
    }


def _ms(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, 3)
