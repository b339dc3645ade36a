"""What the gateway should serve, projected from the store.

A service is one backend (``s_<name>``) with a server per instance; a group is one backend
(``g_<name>``) with a server per member instance, weighted so each member's share of the
traffic is its weight however many instances it has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from airflow_eas.server.gateway import DRAIN, MAINT, READY, Backend, GatewayState, Server
from airflow_eas.server.store import DELETED, DRAINING, RUNNING, InstanceRow, Store
from airflow_eas.spec import ServiceSpec

MAX_SERVER_WEIGHT = 256  # HAProxy's largest server weight


def group_server_name(inst: InstanceRow) -> str:
    """``<service>.<suffix>``: the metrics collector reads the member from what precedes the dot."""
    return f"{inst.service}.{inst.id.rsplit('-', 1)[-1]}"


def server_weights(weights: dict[str, int], serving: dict[str, int]) -> dict[str, int]:
    """Each serving instance's server weight, per member: the member's weight split over its serving
    instances, scaled so the largest share is HAProxy's top weight, and never below 1 for a member
    with a weight (a rounding must not silence it). Members with weight 0 or no serving instance get 0."""
    shares = {svc: weight / serving[svc] for svc, weight in weights.items() if serving.get(svc)}
    top = max(shares.values(), default=0)
    if top <= 0:
        return dict.fromkeys(weights, 0)
    scale = MAX_SERVER_WEIGHT / top
    return {svc: max(1, round(shares[svc] * scale)) if shares.get(svc) else 0 for svc in weights}


def admin_state(inst: InstanceRow, promoted: Collection[str]) -> str:
    if inst.id in promoted:
        return READY
    return {RUNNING: READY, DRAINING: DRAIN}.get(inst.state, MAINT)


def gateway_state(store: Store, promoted: Collection[str]) -> GatewayState:
    """The desired gateway state. ``promoted``: ready instances the gateway should take before the
    store calls them RUNNING (so nobody sees "Running" before it is routed to)."""
    with store.lock:
        services = store.services()
        instances = store.instances()
        groups = [(grp, token, store.members(grp)) for grp, token in store.groups()]
    in_gateway: dict[str, list[InstanceRow]] = defaultdict(list)
    for inst in instances:
        if inst.in_gateway:
            in_gateway[inst.service].append(inst)
    state = GatewayState()
    kinds = {}
    for svc in services:
        kinds[svc.name] = kind = ServiceSpec.model_validate(svc.spec).kind
        image = kind == "image"
        backend = Backend(f"s_{svc.name}", None if image else "/ready", strip_prefix=image, gateway_checks_body=image)
        backend.servers = [
            Server(i.id, f"127.0.0.1:{i.port}", 1, admin_state(i, promoted)) for i in in_gateway[svc.name]
        ]
        state.backends[backend.name] = backend
        if svc.desired != DELETED:
            state.routes[svc.name] = (backend.name, svc.token)
    for grp, token, weights in groups:
        state.backends[f"g_{grp}"] = _group_backend(grp, weights, in_gateway, kinds, promoted)
        state.routes[grp] = (f"g_{grp}", token)
    return state


def _group_backend(
    grp: str, weights: dict[str, int], in_gateway: dict[str, list[InstanceRow]], kinds: dict[str, str],
    promoted: Collection[str],
) -> Backend:
    def serving(inst: InstanceRow) -> bool:
        return inst.state == RUNNING or inst.id in promoted

    per_server = server_weights(weights, {svc: sum(map(serving, in_gateway[svc])) for svc in weights})
    images = bool(weights) and all(kinds.get(s) == "image" for s in weights)
    any_image = any(kinds.get(s) == "image" for s in weights)
    backend = Backend(f"g_{grp}", None if any_image else "/ready", strip_prefix=images, gateway_checks_body=any_image)
    for svc in weights:
        for inst in in_gateway[svc]:
            weight = per_server[svc] if serving(inst) else 0
            backend.servers.append(
                Server(group_server_name(inst), f"127.0.0.1:{inst.port}", weight, admin_state(inst, promoted))
            )
    return backend
