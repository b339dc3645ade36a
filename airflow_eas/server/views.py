"""What the API and ``/metrics`` show of the store: service and instance views, statuses and
the Prometheus text exposition. Read-only: nothing here changes what runs."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from airflow_eas.platform import base as api
from airflow_eas.server.store import ACTIVE_STATES, BACKOFF, DELETED, DRAINING, RUNNING, STARTING, STOPPING
from airflow_eas.spec import redact_secrets

if TYPE_CHECKING:
    from airflow_eas.server.metrics import MetricsCollector
    from airflow_eas.server.store import InstanceRow, ServiceRow, Store

WINDOW_SECONDS = 60  # of the latency quantiles in /metrics

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


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


PROMETHEUS_HEADER = [
    "# HELP eas_requests_total Requests the gateway forwarded to the service (all routes).",
    "# TYPE eas_requests_total counter",
    "# HELP eas_errors_total Requests answered 5xx or failed to connect.",
    "# TYPE eas_errors_total counter",
    f"# HELP eas_latency_ms Gateway-measured latency quantiles over the last {WINDOW_SECONDS} s.",
    "# TYPE eas_latency_ms gauge",
    "# HELP eas_service_up 1 for the service's current status.",
    "# TYPE eas_service_up gauge",
    "# HELP eas_running_instances Instances of the current version that serve.",
    "# TYPE eas_running_instances gauge",
    "# HELP eas_group_weight Traffic weight of a group member.",
    "# TYPE eas_group_weight gauge",
]


def render_prometheus(store: Store, metrics: MetricsCollector) -> str:
    out = list(PROMETHEUS_HEADER)
    instances = store.instances()
    for svc in store.services():
        out += _service_lines(svc, [i for i in instances if i.service == svc.name], metrics)
    for group, _ in store.groups():
        for member, weight in store.members(group).items():
            out.append(f"eas_group_weight{_labels(group=group, service=member)} {weight}")
    return "\n".join(out) + "\n"


def _service_lines(svc: ServiceRow, mine: list[InstanceRow], metrics: MetricsCollector) -> list[str]:
    lbl = _labels(service=svc.name)
    requests, errors = metrics.totals.get(svc.name, [0, 0])
    out = [
        f"eas_requests_total{lbl} {round(requests)}",  # sampled lines weigh fractions
        f"eas_errors_total{lbl} {round(errors)}",
    ]
    window = metrics.window(svc.name, WINDOW_SECONDS)
    for q, value in (("0.5", window.p50_ms), ("0.95", window.p95_ms), ("0.99", window.p99_ms)):
        if value is not None:
            out.append(f"eas_latency_ms{_labels(service=svc.name, quantile=q)} {value}")
    out.append(f"eas_service_up{_labels(service=svc.name, status=service_status(svc, mine))} 1")
    running = sum(1 for i in mine if i.state == RUNNING and i.version == svc.version)
    out.append(f"eas_running_instances{lbl} {running}")
    return out
