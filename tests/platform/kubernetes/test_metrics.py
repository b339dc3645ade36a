"""Metrics from a real Prometheus: the default query set over series shaped like Istio's gateway's."""

from __future__ import annotations

import time

import pytest

from airflow_eas.analysis import ERROR, FAILED, INCONCLUSIVE, SUCCESSFUL, AnalysisPlan, measure
from airflow_eas.errors import InvalidSpec, NotFound, PlatformUnavailable
from airflow_eas.platform.kubernetes.metrics import MetricsReader
from airflow_eas.prometheus import PrometheusClient
from airflow_eas.spec import parse_spec
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
    limits = AnalysisPlan.parse(window_seconds=WINDOW, min_requests=20, max_error_rate=0.01)
    assert measure(p, "fraud_green", limits).result == FAILED

    exporter.set(namespace, "fraud-green", error_rate=0.0, latencies_ms=(8.0,))
    time.sleep(WINDOW + 1)
    assert measure(p, "fraud_green", limits).result == SUCCESSFUL

    # No series for a member nobody calls: no data, never a pass.
    quiet = p.metrics("fraud_quiet", WINDOW)
    assert (quiet.requests, quiet.errors, quiet.p50_ms, quiet.p99_ms) == (0, 0, None, None)
    assert measure(p, "fraud_quiet", limits).result == INCONCLUSIVE


def test_prometheus_down_is_an_error(kube_conn: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_green")))
    p.settings.prometheus_url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PlatformUnavailable, match="cannot reach Prometheus"):
        p.metrics("fraud_green", 30)
    with pytest.raises(PlatformUnavailable, match="cannot reach Prometheus"):
        p.series("fraud_green")
    verdict = measure(p, "fraud_green", AnalysisPlan.parse(window_seconds=30))
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
    with pytest.raises(InvalidSpec, match="refused the query"):
        client.query_range("sum(", start=time.time() - 60, end=time.time(), step=10)
    exporter.set("other", "svc-b", rps=1.0)
    time.sleep(2)
    with pytest.raises(InvalidSpec, match="gives 2 series"):
        client.value('sum by (destination_service_name) (istio_requests_total{destination_service_namespace="other"})')


def test_series_of_a_member_and_its_group_from_range_queries(
    kube_conn: str, prometheus: Prometheus, exporter: Exporter, namespace: str
) -> None:
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_green", group="fraud")))
    p.create(parse_spec(image_spec("fraud_blue", group="fraud")))
    exporter.set(namespace, "fraud-green", rps=20.0, error_rate=0.1, latencies_ms=(8.0,) * 9 + (400.0,))
    exporter.set(namespace, "fraud-blue", rps=10.0, latencies_ms=(40.0,))
    exporter.set_pod(namespace, "fraud-green-5d8f7b-kq2lm", cpu_cores=0.25, memory_mb=300)
    # Another service's pod whose name starts alike (service fraud_green_x) is not fraud_green's.
    exporter.set_pod(namespace, "fraud-green-x-7c9d8-abcde", cpu_cores=2, memory_mb=900)
    time.sleep(22)  # two whole 10 s steps of traffic, scraped

    green = p.series("fraud_green")
    assert (green.name, green.window_seconds, green.step_seconds) == ("fraud_green", 900, 10)
    pts = green.points
    assert len(pts["t"]) >= 2, pts
    assert pts["t"] == sorted(pts["t"])
    assert all(t % 10 == 0 for t in pts["t"])
    assert pts["t"][-1] <= time.time() < pts["t"][-1] + 20
    for i in range(len(pts["t"])):
        assert 0 < pts["requests"][i] <= 20 * 10 * 1.3, pts
        assert pts["rps"][i] == pytest.approx(pts["requests"][i] / 10, abs=0.001)
        assert pts["errors"][i] <= pts["requests"][i]
    assert 0.05 <= pts["error_rate"][-1] <= 0.15, pts  # a ratio: right from the first step
    lower, upper = bucket_of(8.0)
    assert lower <= pts["p50_ms"][-1] <= upper
    lower, upper = bucket_of(400.0)
    assert lower <= pts["p99_ms"][-1] <= upper
    assert list(green.instances) == ["fraud-green-5d8f7b-kq2lm"], "its own pod, counted once"
    usage = green.instances["fraud-green-5d8f7b-kq2lm"]
    assert usage["t"] == sorted(usage["t"])
    assert usage["t"]
    assert usage["memory_mb"][-1] == pytest.approx(300)
    assert 0 < usage["cpu_percent"][-1] <= 25 * 1.2, usage  # a rate over the last minute: it grows to 25

    group = p.series("fraud")
    blue = p.series("fraud_blue")
    assert blue.instances == {}, "no cAdvisor series for its pods: no instances, not an error"
    assert list(group.instances) == ["fraud-green-5d8f7b-kq2lm"]
    both = sorted(set(green.points["t"]) & set(blue.points["t"]) & set(group.points["t"]))
    assert both, (green.points["t"], blue.points["t"], group.points["t"])
    t = both[-1]

    def at(series, column):
        return series.points[column][series.points["t"].index(t)]

    assert abs(at(group, "requests") - at(green, "requests") - at(blue, "requests")) <= 1
    assert abs(at(group, "errors") - at(green, "errors")) <= 1
    assert at(blue, "errors") == 0
    assert at(group, "p99_ms") == max(at(green, "p99_ms"), at(blue, "p99_ms")), "the slowest member's"

    assert p.series("fraud_green", "24h").step_seconds == 60
    with pytest.raises(InvalidSpec, match="window: '5m' is not one of 15m, 1h, 24h"):
        p.series("fraud_green", "5m")
    with pytest.raises(NotFound):
        p.series("nothing_here")
