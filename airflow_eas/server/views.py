"""What the API and ``/metrics`` show of the store: service and instance views, statuses and
the Prometheus text exposition. Read-only: nothing here changes what runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from airflow_eas.platform import base as api
from airflow_eas.server.metrics import LATENCY_BUCKETS_S, Totals
from airflow_eas.server.store import ACTIVE_STATES, BACKOFF, DELETED, DRAINING, RUNNING, STARTING, STOPPING
from airflow_eas.spec import redact_secrets

if TYPE_CHECKING:
    from airflow_eas.server.metrics import MetricsCollector
    from airflow_eas.server.store import InstanceRow, ServiceRow, Store

INSTANCE_STATUS = {
    STARTING: "Pending",
    RUNNING: api.RUNNING,
    BACKOFF: "Restarting",
    DRAINING: "Draining",
    STOPPING: "Terminating",
}


def service_status(svc: ServiceRow, insts: list[InstanceRow]) -> str:
    if svc.desired == DELETED:
        return api.DELETING
    if svc.failed_version == svc.version:
        return api.FAILED
    if svc.desired == 0:
        return api.STOPPED if not insts else api.STOPPING
    if any(i.version != svc.version for i in insts):
        return api.UPDATING
    current = [i for i in insts if i.state in ACTIVE_STATES]
    ready = sum(1 for i in current if i.state == RUNNING)
    if ready == 0:
        return api.WAITING if svc.ever_ready else api.CREATING  # nothing serves (yet, or any more)
    if len(current) != svc.desired or len(insts) != len(current):
        return api.SCALING
    return api.RUNNING


def describe_all(store: Store, gateway_url: str) -> list[api.ServiceInfo]:
    """Every service, read in three queries whatever their number (a list must not cost a query per service)."""
    with store.lock:
        services = store.services()
        by_service: dict[str, list[InstanceRow]] = defaultdict(list)
        for inst in store.instances():
            by_service[inst.service].append(inst)
        events = store.recent_events()
    return [describe(store, s, gateway_url, by_service.get(s.name, []), events.get(s.name, [])) for s in services]


def describe(
    store: Store, svc: ServiceRow, gateway_url: str, insts: list[InstanceRow] | None = None,
    events: list[dict] | None = None,
) -> api.ServiceInfo:
    insts = store.instances(svc.name) if insts is None else insts
    events = store.events(svc.name) if events is None else events
    running = [i for i in insts if i.state == RUNNING and i.version == svc.version]
    endpoint = f"{gateway_url}/api/predict/{svc.name}"
    return api.ServiceInfo(
        name=svc.name,
        status=service_status(svc, insts),
        endpoint=endpoint,
        token=svc.token,
        group=svc.grp,
        instances=max(svc.desired, 0),
        running_instances=len(running),
        version=svc.version,
        instance_list=[
            api.InstanceInfo(
                id=i.id, address=f"127.0.0.1:{i.port}", status=INSTANCE_STATUS.get(i.state, i.state),
                version=i.version, restarts=i.restarts, started_at=i.started_at,
            )
            for i in insts
        ],
        reason=svc.reason if svc.failed_version == svc.version else "",
        spec=redact_secrets(svc.spec),
        events=[api.Event(**e) for e in events],
        link=f"{endpoint}/?token={svc.token}" if svc.spec.get("containers") else None,
    )


class PlatformCollector(Collector):
    """The store and the data-plane counters as Prometheus metric families, read at each scrape."""

    def __init__(self, store: Store, metrics: MetricsCollector) -> None:
        self.store, self.metrics = store, metrics

    def collect(self) -> Iterator[Metric]:
        totals = self.metrics.totals()
        requests = CounterMetricFamily("eas_requests", "Requests the gateway forwarded to the service (all routes).",
                                       labels=["service"])
        errors = CounterMetricFamily(
            "eas_errors", "Requests that count against the error rate: 5xx, 408, 450 and no answer "
            "(server/metrics.py is_error).", labels=["service"])
        responses = CounterMetricFamily("eas_responses", "Requests the gateway forwarded, by status code.",
                                        labels=["service", "code"])
        latency = HistogramMetricFamily("eas_request_duration_seconds",
                                        "Gateway-measured time of a request, from accept to the last byte.",
                                        labels=["service"])
        up = GaugeMetricFamily("eas_service_up", "1 for the service's current status.", labels=["service", "status"])
        running = GaugeMetricFamily("eas_running_instances", "Instances of the current version that serve.",
                                    labels=["service"])
        instances = self.store.instances()
        for svc in self.store.services():
            mine = [i for i in instances if i.service == svc.name]
            t = totals.get(svc.name) or Totals()
            requests.add_metric([svc.name], round(t.requests))  # sampled lines weigh fractions
            errors.add_metric([svc.name], round(t.errors))
            for code, n in sorted(t.statuses.items()):
                responses.add_metric([svc.name, str(code)], round(n))
            latency.add_metric([svc.name], buckets=_cumulative(t.buckets), sum_value=t.seconds)
            up.add_metric([svc.name, service_status(svc, mine)], 1)
            running.add_metric([svc.name], sum(1 for i in mine if i.state == RUNNING and i.version == svc.version))
        weight = GaugeMetricFamily("eas_group_weight", "Traffic weight of a group member.", labels=["group", "service"])
        for group, _ in self.store.groups():
            for member, w in self.store.members(group).items():
                weight.add_metric([group, member], w)
        forged = CounterMetricFamily("eas_metrics_forged_lines",
                                     "Request log lines dropped for a missing or wrong start secret.")
        forged.add_metric([], self.metrics.forged)
        yield from (requests, errors, responses, latency, up, running, weight, forged)


def _cumulative(buckets: list[float]) -> list[tuple[str, float]]:
    out, seen = [], 0.0
    for bound, n in zip((*(str(b) for b in LATENCY_BUCKETS_S), "+Inf"), buckets, strict=True):
        seen += n
        out.append((bound, round(seen)))
    return out


def render_prometheus(store: Store, metrics: MetricsCollector) -> bytes:
    """The text exposition format, written by prometheus_client (``promtool check metrics`` clean)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(store, metrics))
    return generate_latest(registry)
