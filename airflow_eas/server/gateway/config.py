"""The HAProxy config of a gateway state, and the map files it reads.

Routes, tokens, signing keys and sampling rates live in map files beside the config,
so the frontend is the same for every state; each backend is one block.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from airflow_eas.server.gateway.state import DRAIN, MAINT, Backend, GatewayState

NOT_FOUND_BODY = '{"code":"NotFound","message":"no such service or group"}'
UNAUTHORIZED_BODY = '{"code":"Unauthorized","message":"missing or wrong token in the Authorization header"}'
NO_SERVER_BODY = '{"code":"Unavailable","message":"no instance is serving"}'


@dataclass(frozen=True)
class GatewayConfig:
    """Where the gateway listens and keeps its files; renders and writes its config."""

    dir: Path
    host: str
    port: int
    log_port: int
    request_log: bool = True  # per-request logs feed the metrics; off only to measure what they cost

    @property
    def cfg(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def admin_sock(self) -> Path:
        return self.dir / "admin.sock"

    @property
    def sample_map(self) -> Path:
        return self.dir / "sample.map"

    def render(self, state: GatewayState) -> str:
        sections = [self._global(), _defaults(), self._frontend(), _not_found()]
        sections += [_backend(b) for b in sorted(state.backends.values(), key=lambda b: b.name)]
        return "\n".join(line for section in sections for line in section)

    def write(self, state: GatewayState, sampling: dict[str, int]) -> None:
        """The config and its maps, each replaced atomically (HAProxy never reads a half-written file)."""
        routes = sorted(state.routes.items())
        atomic_write(self.dir / "tokens.map", "".join(f"{name} {token}\n" for name, (_, token) in routes), 0o600)
        keys = "".join(f"{name} {base64.b64encode(token.encode()).decode()}\n" for name, (_, token) in routes)
        atomic_write(self.dir / "keys.map", keys, 0o600)
        self.write_sampling(sampling)
        atomic_write(self.dir / "backends.map", "".join(f"{name} {backend}\n" for name, (backend, _) in routes))
        atomic_write(self.cfg, self.render(state), 0o600)

    def write_sampling(self, sampling: dict[str, int]) -> None:
        atomic_write(self.sample_map, "".join(f"{route} {n}\n" for route, n in sorted(sampling.items())))

    def _global(self) -> list[str]:
        return [
            "global",
            "    master-worker",
            f"    stats socket {self.admin_sock} mode 600 level admin expose-fd listeners",
            "    maxconn 8000",
            "    hard-stop-after 30s",
            f"    log 127.0.0.1:{self.log_port} len 512 format raw local0 info" if self.request_log else "",
            "",
        ]

    def _frontend(self) -> list[str]:
        d = self.dir
        return [
            "frontend gateway",
            f"    bind {self.host}:{self.port}",
            "    http-request set-var(txn.eas_name) path,field(4,/) if { path_beg /api/predict/ }",
            f"    http-request set-var(txn.eas_token) var(txn.eas_name),map_str({d}/tokens.map)",
            # busy routes log a sample (the per-mille travels in the line, so the metrics weigh it back)
            f"    http-request set-var(txn.eas_keep) var(txn.eas_name),map_str_int({d}/sample.map,1000)",
            "    http-request set-var(txn.eas_roll) rand(1000)",
            "    http-request set-log-level silent if { var(txn.eas_roll),sub(txn.eas_keep) ge 0 }",
            "    acl known_name var(txn.eas_token) -m found",
            "    acl token_ok req.fhdr(Authorization),strcmp(txn.eas_token) eq 0",
            # EAS's request signature (what the eas-prediction SDK sends): "EAS " + base64(HMAC-SHA1 keyed by
            # the token over method, body MD5, content type, Date and /api/predict/<name>)
            "    acl signed req.fhdr(Authorization) -m beg \"EAS \"",
            f"    http-request set-var(txn.eas_key) var(txn.eas_name),map_str({d}/keys.map) if signed",
            "    http-request set-var(txn.eas_md5) req.body,digest(md5),hex,lower if signed",
            '    http-request set-var-fmt(txn.eas_sig_in) "%[method]\\n%[var(txn.eas_md5)]\\n'
            '%[req.fhdr(content-type)]\\n%[req.fhdr(date)]\\n/api/predict/%[var(txn.eas_name)]" if signed',
            '    http-request set-var-fmt(txn.eas_sig) "EAS %[var(txn.eas_sig_in),hmac(sha1,txn.eas_key),base64]"'
            " if signed",
            "    acl signature_ok req.fhdr(Authorization),strcmp(txn.eas_sig) eq 0",
            # web apps in a browser: the link carries ?token=…, answered with a cookie scoped to the app's path
            "    acl query_token_ok url_param(token),strcmp(txn.eas_token) eq 0",
            "    acl cookie_ok req.cook(eas_token),strcmp(txn.eas_token) eq 0",
            "    http-request set-var(txn.eas_set_cookie) bool(true) if query_token_ok",
            f"    http-request return status 404 content-type application/json string '{NOT_FOUND_BODY}'"
            " if !known_name",
            f"    http-request return status 401 content-type application/json string '{UNAUTHORIZED_BODY}'"
            " if !token_ok !signature_ok !query_token_ok !cookie_ok",
            '    http-after-response add-header Set-Cookie "eas_token=%[var(txn.eas_token)]; '
            'Path=/api/predict/%[var(txn.eas_name)]; HttpOnly; SameSite=Lax" if { var(txn.eas_set_cookie) -m bool }',
            f"    use_backend %[var(txn.eas_name),map_str({d}/backends.map)]",
            "    default_backend be_notfound",
            "",
        ]


def _defaults() -> list[str]:
    return [
        "defaults",
        "    mode http",
        "    log global",
        '    log-format "%b %s %ST %Ta %[var(txn.eas_keep)]"',
        "    option dontlognull",
        "    option redispatch",
        "    option idle-close-on-response",
        "    retries 3",
        "    option http-buffer-request",
        "    retry-on conn-failure empty-response",
        "    timeout connect 2s",
        "    timeout client 120s",
        "    timeout server 300s",
        "    timeout http-keep-alive 30s",
        "    timeout http-request 30s",
        "    default-server check inter 500 fall 2 rise 2",
        f"    http-error status 503 content-type application/json string '{NO_SERVER_BODY}'",
        "",
    ]


def _not_found() -> list[str]:
    return [
        "backend be_notfound",
        f"    http-request return status 404 content-type application/json string '{NOT_FOUND_BODY}'",
        "",
    ]


def _backend(backend: Backend) -> list[str]:
    lines = [f"backend {backend.name}", "    balance roundrobin"]
    if backend.http_check:
        lines += [f"    option httpchk GET {backend.http_check}", "    http-check expect status 200"]
    if backend.strip_prefix:
        lines.append("    http-request replace-path '/api/predict/[^/]+/?(.*)' '/\\1'")
    for s in sorted(backend.servers, key=lambda s: s.name):
        weight = 0 if s.state == DRAIN else s.weight
        flags = " disabled" if s.state == MAINT else ""
        lines.append(f"    server {s.name} {s.address} weight {weight}{flags}")
    lines.append("")
    return lines


def read_map(path: Path) -> dict[str, int]:
    try:
        pairs = [line.split() for line in path.read_text().splitlines()]
    except OSError:
        return {}
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
