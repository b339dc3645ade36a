"""Prometheus text exposition of the control plane's view: services, groups, data-plane metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_eas.server.reconciler import service_status

if TYPE_CHECKING:
    from airflow_eas.server.app import ControlPlane

WINDOW_SECONDS = 60


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def render_prometheus(cp: ControlPlane) -> str:
    out = [
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
    instances = cp.store.instances()
    for svc in cp.store.services():
        mine = [i for i in instances if i.service == svc.name]
        lbl = _labels(service=svc.name)
        requests, errors = cp.metrics.totals.get(svc.name, [0, 0])
        out.append(f"eas_requests_total{lbl} {round(requests)}")  # sampled lines weigh fractions
        out.append(f"eas_errors_total{lbl} {round(errors)}")
        window = cp.metrics.window(svc.name, WINDOW_SECONDS)
        for q, value in (("0.5", window.p50_ms), ("0.95", window.p95_ms), ("0.99", window.p99_ms)):
            if value is not None:
                out.append(f"eas_latency_ms{_labels(service=svc.name, quantile=q)} {value}")
        out.append(f"eas_service_up{_labels(service=svc.name, status=service_status(svc, mine))} 1")
        running = sum(1 for i in mine if i.state == "running" and i.version == svc.version)
        out.append(f"eas_running_instances{lbl} {running}")
    for group, _ in cp.store.groups():
        for member, weight in cp.store.members(group).items():
            out.append(f"eas_group_weight{_labels(group=group, service=member)} {weight}")
    return "\n".join(out) + "\n"
