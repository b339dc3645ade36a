"""The gateway state projected from the store: routes, admin states and group weights."""

from __future__ import annotations

import time
from pathlib import Path

from airflow_eas.server.gateway import DRAIN, MAINT, READY, body_check
from airflow_eas.server.reconciler.projection import gateway_state, group_server_name, server_weights
from airflow_eas.server.store import DELETED, DRAINING, RUNNING, STARTING, InstanceRow, Store
from tests.conftest import echo_spec


def test_weights_split_over_a_members_instances() -> None:
    # 80/20 with one instance each: the larger share gets HAProxy's top weight
    assert server_weights({"a": 80, "b": 20}, {"a": 1, "b": 1}) == {"a": 256, "b": 64}
    # b's 20 % is spread over two instances: each gets half of one a-instance's 40 %
    assert server_weights({"a": 40, "b": 20}, {"a": 1, "b": 2}) == {"a": 256, "b": 64}


def test_a_small_weight_is_never_rounded_to_silence() -> None:
    assert server_weights({"a": 100, "b": 1}, {"a": 1, "b": 4}) == {"a": 256, "b": 1}


def test_zero_weight_or_no_serving_instance_gets_nothing() -> None:
    assert server_weights({"a": 100, "b": 0}, {"a": 1, "b": 1}) == {"a": 256, "b": 0}
    assert server_weights({"a": 100, "b": 50}, {"a": 0, "b": 1}) == {"a": 0, "b": 256}
    assert server_weights({"a": 0}, {"a": 1}) == {"a": 0}


def _instance(store: Store, service: str, suffix: str, state: str, port: int) -> InstanceRow:
    now = time.time()
    inst = InstanceRow(f"{service}-{suffix}", service, 1, port, "h", state, True, 0, now, None, now)
    store.insert_instance(inst)
    return inst


def test_group_backend_follows_weights_and_instance_states(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    for name in ("blue", "green"):
        store.insert_service(name, echo_spec(name, group="fraud"), 1, f"t-{name}", "fraud")
        store.join_group("fraud", name, "group-token")
    store.set_weights("fraud", {"blue": 75, "green": 25})
    _instance(store, "blue", "aaa", RUNNING, 1001)
    _instance(store, "blue", "bbb", DRAINING, 1002)
    green = _instance(store, "green", "ccc", STARTING, 1003)

    before = gateway_state(store, promoted=set())
    servers = {s.name: s for s in before.backends["g_fraud"].servers}
    assert (servers["blue.aaa"].weight, servers["blue.aaa"].state) == (256, READY)
    assert (servers["blue.bbb"].weight, servers["blue.bbb"].state) == (0, DRAIN)
    assert (servers["green.ccc"].weight, servers["green.ccc"].state) == (0, MAINT), "not ready: no traffic"
    assert before.routes["fraud"] == ("g_fraud", "group-token")
    assert before.routes["blue"] == ("s_blue", "t-blue")

    after = gateway_state(store, promoted={green.id})  # ready, about to be routed to
    servers = {s.name: s for s in after.backends["g_fraud"].servers}
    assert (servers["green.ccc"].weight, servers["green.ccc"].state) == (85, READY)  # 25/75 of 256
    assert group_server_name(green) == "green.ccc"


def test_a_deleted_service_keeps_its_backend_but_loses_its_route(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.insert_service("gone", echo_spec("gone"), 1, "t", None)
    _instance(store, "gone", "aaa", DRAINING, 1001)
    store.update_service("gone", desired=DELETED)
    state = gateway_state(store, promoted=set())
    assert "gone" not in state.routes
    assert [s.name for s in state.backends["s_gone"].servers] == ["gone-aaa"], "in-flight requests finish"


def test_the_gateway_checks_signed_bodies_only_where_no_instance_does(tmp_path: Path) -> None:
    """The model server checks a large signed body against its Content-MD5 itself; an image service does
    not, so its routes (and those of a group with an image member) are the gateway's to check."""
    store = Store(tmp_path / "state.db")
    store.insert_service("image", echo_spec("image", group="mixed"), 1, "t1", "mixed")
    store.join_group("mixed", "image", "group-token")
    store.insert_service("model", {"name": "model", "processor": "sklearn", "model_path": "file:///m.joblib",
                                   "metadata": {"instance": 1, "group": "mixed"}}, 1, "t2", "mixed")
    store.join_group("mixed", "model", "group-token")
    store.insert_service("alone", {"name": "alone", "processor": "sklearn", "model_path": "file:///m.joblib"},
                         1, "t3", None)
    state = gateway_state(store, promoted=set())
    assert body_check.map_text(state) == "/api/predict/image 1\n/api/predict/mixed 1\n"
