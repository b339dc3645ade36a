"""How two gateway states differ: a reload for topology, runtime commands for the rest."""

from __future__ import annotations

from airflow_eas.server.gateway import DRAIN, READY, Backend, GatewayState, Server
from airflow_eas.server.gateway.state import setting_commands


def _state(weight: int, admin: str = READY, extra: bool = False) -> GatewayState:
    servers = [Server("a.1", "127.0.0.1:1", weight, admin)]
    if extra:
        servers.append(Server("a.2", "127.0.0.1:2"))
    return GatewayState({"g_x": Backend("g_x", "/ready", servers)}, {"x": ("g_x", "tok")})


def test_weight_and_admin_changes_keep_the_topology() -> None:
    assert _state(10).topology() == _state(200, DRAIN).topology()
    assert _state(10).topology() != _state(10, extra=True).topology()


def test_only_changed_settings_become_commands() -> None:
    assert setting_commands(_state(10), _state(10)) == []
    assert setting_commands(_state(10), _state(200, DRAIN)) == [
        "set server g_x/a.1 weight 200",
        "set server g_x/a.1 state drain",
    ]
