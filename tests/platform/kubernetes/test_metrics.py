"""Metrics from a real Prometheus: the default query set over series shaped like Istio's gateway's."""

from __future__ import annotations

import time

import pytest

from airflow_eas.analysis import ERROR, FAILED, INCONCLUSIVE, SUCCESSFUL, Thresholds
from airflow_eas.errors import InvalidSpec, PlatformUnavailable
from airflow_eas.platform.kubernetes.metrics import MetricsReader
from airflow_eas.prometheus_query import PrometheusClient
from airflow_eas.spec import parse_spec
from airflow_eas.triggers.eas import check_metrics
from tests.platform.kubernetes.prometheus import BUCKETS, Exporter, Prometheus, free_port
from tests.platform.kubernetes.test_platform import image_spec, platform_of

WINDOW = 6


def bucket_of(ms: float) -> tuple[float, float]:
    """The histogram bucket (lower, upper] that holds ``ms``: histogram_quantile can only be this precise."""
    lower = 0.0
    for le in BUCKETS:
        if ms <= le:
            return lower, le
        lower = le
    return lower, float("inf")


def test_requests_errors_and_percentiles_come_out_as_emitted(
    kube_conn: str, prometheus: Prometheus, exporter: Exporter, namespace: str
) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_green", group="fraud")))
    p.create(parse_spec(image_spec("fraud_quiet", group="fraud")))
    # 20 rps, 10 % 5xx; latencies: 60 % at 8 ms, 30 % at 40 ms, 10 % at 400 ms.
    latencies = (8.0,) * 6 + (40.0,) * 3 + (400.0,)
    exporter.set(namespace, "fraud-green", rps=20.0, error_rate=0.1, latencies_ms=latencies)
    time.sleep(WINDOW + 2)
    m = p.metrics("fraud_green", WINDOW)
    assert m.service == "fraud_green"
    assert m.window_seconds == WINDOW
    assert 20 * WINDOW * 0.7 <= m.requests <= 20 * WINDOW * 1.3, m
    assert 0.05 <= m.error_rate <= 0.15, m
    assert m.rps == pytest.approx(m.requests / WINDOW, rel=0.01)
    for got, true_ms in ((m.p50_ms, 8.0), (m.p95_ms, 400.0), (m.p99_ms, 400.0)):
        lower, upper = bucket_of(true_ms)
        assert got is not None, (got, true_ms)
        assert lower <= got <= upper, (got, true_ms)
    limits = Thresholds(window_seconds=WINDOW, min_requests=20, max_error_rate=0.01)
    assert check_metrics(p, "fraud_green", limits).result == FAILED

    exporter.set(namespace, "fraud-green", error_rate=0.0, latencies_ms=(8.0,))
    time.sleep(WINDOW + 1)
    assert check_metrics(p, "fraud_green", limits).result == SUCCESSFUL

    # No series for a member nobody calls: no data, never a pass.
    quiet = p.metrics("fraud_quiet", WINDOW)
    assert (quiet.requests, quiet.errors, quiet.p50_ms, quiet.p99_ms) == (0, 0, None, None)
    assert check_metrics(p, "fraud_quiet", limits).result == INCONCLUSIVE


def test_prometheus_down_is_an_error(kube_conn: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_green")))
    p.settings.prometheus_url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PlatformUnavailable, match="cannot reach Prometheus"):
        p.metrics("fraud_green", 30)
    verdict = check_metrics(p, "fraud_green", Thresholds(window_seconds=30))
    assert verdict.result == ERROR
    assert "cannot reach Prometheus" in verdict.reasons[0]
    p.settings.prometheus_url = None
    with pytest.raises(PlatformUnavailable, match="set prometheus_url"):
        p.metrics("fraud_green", 30)


def test_query_overrides_and_bad_queries(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set("other", "svc-a", rps=10.0)
    time.sleep(3)
    client = PrometheusClient(prometheus.url)
    # An override in another shape (here: Istio's counter read with rate() * window) is used as given.
    reader = MetricsReader(client, {"requests": 'sum(rate(istio_requests_total{destination_service_name="{service}",'
                                                'destination_service_namespace="{namespace}"}[{window}])) * 2'})
    m = reader.read(service="svc_a", k8s_service="svc-a", group="", namespace="other", window=2)
    assert 10 <= m.requests <= 30
    with pytest.raises(InvalidSpec, match="refused the query"):
        client.query("sum(rate(istio_requests_total[5s]")
    exporter.set("other", "svc-b", rps=1.0)
    time.sleep(2)
    with pytest.raises(InvalidSpec, match="gives 2 series"):
        client.value('sum by (destination_service_name) (istio_requests_total{destination_service_namespace="other"})')
