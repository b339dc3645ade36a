"""Custom analysis checks against a real Prometheus (Debian's ``prometheus``) scraping a tiny exporter."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_eas.analysis import ERROR, FAILED, INCONCLUSIVE, SUCCESSFUL, AnalysisPlan, AnalysisRun, measure
from airflow_eas.errors import InvalidSpec, PlatformUnavailable
from airflow_eas.platform.base import Metrics
from airflow_eas.prometheus import query_scalar, query_scalar_async
from airflow_eas.server.embedded import free_port
from tests.conftest import wait_until
from tests.fakes import FakePlatform
from tests.platform.kubernetes.prometheus import metrics_server

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)")


class Exporter:
    """Serves ``/metrics`` with gauges the test sets."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.server = metrics_server(lambda: "".join(f"{k} {v}\n" for k, v in self.values.items()))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Exporter]]:
    exporter = Exporter()
    exporter.values = {'canary_error_ratio{service="g_green"}': 0.001, "canary_accuracy": 0.97}
    folder: Path = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: canary\n    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def scraped() -> bool:
        assert proc.poll() is None, "prometheus exited at start"
        try:
            return query_scalar(url, "canary_accuracy", 2) is not None
        except PlatformUnavailable:
            return False

    try:
        wait_until(scraped, 60, "prometheus to scrape the exporter")
        yield url, exporter
    finally:
        proc.terminate()
        proc.wait(10)
        exporter.server.shutdown()


def test_query_scalar_answers_a_number_none_or_a_clear_error(prometheus) -> None:
    url, _ = prometheus
    assert query_scalar(url, "canary_accuracy") == pytest.approx(0.97)
    assert query_scalar(url, "scalar(canary_accuracy) * 100") == pytest.approx(97)
    assert query_scalar(url, "no_such_metric") is None
    with pytest.raises(InvalidSpec, match="refused the query"):
        query_scalar(url, "sum(")
    with pytest.raises(InvalidSpec, match="aggregate it"):
        query_scalar(url, '{job="canary"}')
    with pytest.raises(PlatformUnavailable, match="cannot reach Prometheus"):
        query_scalar(f"http://127.0.0.1:{free_port()}", "up", 2)


def test_async_query_answers_as_the_sync_one(prometheus) -> None:
    url, _ = prometheus
    assert asyncio.run(query_scalar_async(url, "canary_accuracy")) == pytest.approx(0.97)
    assert asyncio.run(query_scalar_async(url, "no_such_metric")) is None
    with pytest.raises(InvalidSpec, match="refused the query"):
        asyncio.run(query_scalar_async(url, "sum("))
    with pytest.raises(InvalidSpec, match="aggregate it"):
        asyncio.run(query_scalar_async(url, '{job="canary"}'))
    with pytest.raises(PlatformUnavailable, match="cannot reach Prometheus"):
        asyncio.run(query_scalar_async(f"http://127.0.0.1:{free_port()}", "up", 2))


def test_custom_checks_decide_by_the_same_rules(prometheus) -> None:
    url, exporter = prometheus
    platform = FakePlatform()
    platform.add_member("g_green", "g", weight=50)
    platform.metric_values["g_green"] = Metrics("g_green", 60, 200, 0, 5.0, 8.0, 10.0)

    def plan(**check: object) -> AnalysisPlan:
        return AnalysisPlan.parse({"min_requests": 10, "count": 2, "interval_seconds": 1, "metrics": [check]})

    errors = {"name": "errors", "prometheus": {"url": url, "query": 'max(canary_error_ratio{service="g_green"})'},
              "max": 0.01}  # fmt: skip
    accuracy = {"name": "accuracy", "prometheus": {"url": url, "query": "canary_accuracy"}, "min": 0.9}
    assert measure(platform, "g_green", plan(**errors)).result == SUCCESSFUL
    assert measure(platform, "g_green", plan(**accuracy)).result == SUCCESSFUL

    exporter.values["canary_accuracy"] = 0.5
    wait_until(lambda: query_scalar(url, "canary_accuracy") == 0.5, 15, "the new value scraped")
    failed = measure(platform, "g_green", plan(**accuracy))
    assert failed.result == FAILED
    assert "accuracy = 0.5 is below 0.9" in failed.message

    missing = {"name": "latency", "prometheus": {"url": url, "query": "canary_latency_seconds"}, "max": 1}
    assert measure(platform, "g_green", plan(**missing)).result == INCONCLUSIVE

    down = {"name": "errors", "prometheus": {"url": f"http://127.0.0.1:{free_port()}", "query": "up",
                                             "timeout_seconds": 2}, "max": 1}  # fmt: skip
    unreachable = plan(**down)
    run = AnalysisRun()
    for _ in range(unreachable.consecutive_error_limit + 1):
        run.add(measure(platform, "g_green", unreachable))
    assert run.phase(unreachable) == ERROR  # an unreachable source is an Error, never a bad canary
