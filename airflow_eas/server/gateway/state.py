"""The gateway's desired state and how two states differ.

A change of *topology* (a backend or a server added or removed, a route or token changed)
needs a reload; a change of weight or admin state alone is a runtime command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

READY, DRAIN, MAINT = "ready", "drain", "maint"
ROUTE_PREFIX = "/api/predict/"


def route_key(name: str) -> str:
    """A route's key in the gateway's maps: the path prefix its requests begin with."""
    return ROUTE_PREFIX + name


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    weight: int = 1
    state: str = READY


@dataclass
class Backend:
    name: str
    http_check: str | None  # a readiness path checked over HTTP; None checks TCP connects
    servers: list[Server] = field(default_factory=list)
    # image services get the path below /api/predict/<name>, as EAS forwards to custom images
    strip_prefix: bool = False
    # its instances do not check a signed body against its Content-MD5 (image services): the gateway
    # does, also past its buffer (body_check.py)
    gateway_checks_body: bool = False


@dataclass
class GatewayState:
    backends: dict[str, Backend] = field(default_factory=dict)
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (backend, token)

    def topology(self) -> tuple:
        return (
            tuple(sorted(
                (b.name, b.http_check, b.strip_prefix, b.gateway_checks_body,
                 tuple(sorted((s.name, s.address) for s in b.servers)))
                for b in self.backends.values()
            )),
            tuple(sorted(self.routes.items())),
        )

    def server_settings(self) -> dict[tuple[str, str], tuple[int, str]]:
        return {(b.name, s.name): (s.weight, s.state) for b in self.backends.values() for s in b.servers}


def setting_commands(applied: GatewayState, state: GatewayState) -> list[str]:
    """Runtime-API commands that take ``applied`` to ``state`` when their topology is the same."""
    before = applied.server_settings()
    commands = []
    for (backend, server), (weight, admin) in state.server_settings().items():
        old_weight, old_admin = before.get((backend, server), (None, None))
        if weight != old_weight:
            commands.append(f"set server {backend}/{server} weight {weight}")
        if admin != old_admin:
            commands.append(f"set server {backend}/{server} state {admin}")
    return commands
