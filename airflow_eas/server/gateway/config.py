"""The HAProxy config of a gateway state, and the map files it reads.

Routes, tokens, signing keys and sampling rates live in map files beside the config,
so the frontend is the same for every state; each backend is one block.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from airflow_eas.server.gateway import body_check
from airflow_eas.server.gateway.state import DRAIN, MAINT, ROUTE_PREFIX, Backend, GatewayState, route_key
from airflow_eas.server.metrics import ERROR_4XX

NOT_FOUND_BODY = '{"code":"NotFound","message":"no such service or group"}'
UNAUTHORIZED_BODY = '{"code":"Unauthorized","message":"missing or wrong token in the Authorization header"}'
NO_SERVER_BODY = (
    '{"code":"Unavailable","message":"no instance could take the request: none is serving, or every one is '
    'busy and the request waited in the queue too long; retry later"}'
)
STALE_DATE_BODY = (
    '{"code":"Unauthorized","message":"EAS signature: the Date header is missing or too far from the '
    'gateway clock"}'
)

MB = 1024 * 1024
DEFAULT_MAX_BODY = 32 * MB
# HAProxy holds a request body of up to one buffer (16 KB, less the headers): an EAS signature over a
# body that fits is checked against the body itself, over a larger one against the Content-MD5 header it
# signs, which the model server checks against the body, and the gateway for image services
# (body_check.py; req.body sees only the first buffer: that was the 401 for signed bodies from about
# 15 KB). A larger tune.bufsize was measured here: 64 KB cost a third of the gateway's throughput, 1 MB
# nine tenths.
SIGNATURE_SKEW_SECONDS = 900  # EAS's window for the Date of a signed request
SERVER_MAXCONN = 64  # requests in flight per instance; the rest wait in HAProxy's queue
SERVER_MAXQUEUE = 512  # requests waiting per instance; beyond that (or past QUEUE_TIMEOUT) a clean 503
QUEUE_TIMEOUT = "10s"
# A check can wait seconds behind a large prediction: a model server's event loop shares one GIL with
# the JSON parsing and encoding of a 10 MB body. So checks are patient (CHECK_TIMEOUT, 3 misses in a row
# mark a server down), and a dead instance is caught by the traffic instead: one refused connection
# marks its server down at once (``observe layer4``), and the request is retried on another.
CHECK_TIMEOUT_S = 5
# an instance's answer that is not an error (metrics.is_error), as an HAProxy condition
_NOT_AN_ERROR = f"!{{ status ge 500 }} !{{ status {' '.join(map(str, sorted(ERROR_4XX)))} }}"
CHECK = "check inter 1s fall 3 rise 2 observe layer4 error-limit 1 on-error mark-down"
# Lua, because HAProxy 2.6 has no converter that parses an HTTP date: seconds between a Date header
# and the gateway clock (a huge number for an unparseable date)
DATE_SKEW_LUA = """core.register_converters("eas_date_skew", function(date)
  local t = core.http_date(date)
  if t == nil then return 2147483647 end
  return math.abs(os.time() - t)
end)
"""


@dataclass(frozen=True)
class GatewayConfig:
    """Where the gateway listens and keeps its files; renders and writes its config."""

    dir: Path
    host: str
    port: int
    log_port: int
    request_log: bool = True  # per-request logs feed the metrics; off only to measure what they cost
    max_body: int = DEFAULT_MAX_BODY  # bytes; a larger declared body is answered 413
    # begins every request log line: the metrics receiver drops lines without it (any local process can
    # send to a UDP port; only the gateway reads this 0600 config)
    log_secret: str = ""

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
        sections = [self._global(), self._defaults(), self._frontend(), self._checked_bodies(), _not_found()]
        sections += [_backend(b) for b in sorted(state.backends.values(), key=lambda b: b.name)]
        return "\n".join(line for section in sections for line in section)

    def write(self, state: GatewayState, sampling: dict[str, int]) -> None:
        """The config and its maps, each replaced atomically (HAProxy never reads a half-written file)."""
        routes = [(route_key(name), target) for name, target in sorted(state.routes.items())]
        atomic_write(self.dir / "tokens.map", "".join(f"{key} {token}\n" for key, (_, token) in routes), 0o600)
        keys = "".join(f"{key} {base64.b64encode(token.encode()).decode()}\n" for key, (_, token) in routes)
        atomic_write(self.dir / "keys.map", keys, 0o600)
        self.write_sampling(sampling)
        atomic_write(self.dir / "backends.map", "".join(f"{key} {backend}\n" for key, (backend, _) in routes))
        atomic_write(self.dir / body_check.MAP, body_check.map_text(state))
        body_lua = body_check.lua(self.dir, self.max_body, self._too_large_body(), NO_SERVER_BODY)
        atomic_write(self.dir / "eas.lua", DATE_SKEW_LUA + body_lua)
        atomic_write(self.cfg, self.render(state), 0o600)

    def write_sampling(self, sampling: dict[str, int]) -> None:
        atomic_write(self.sample_map, "".join(f"{route_key(route)} {n}\n" for route, n in sorted(sampling.items())))

    def _global(self) -> list[str]:
        return [
            "global",
            "    master-worker",
            f"    stats socket {self.admin_sock} mode 600 level admin expose-fd listeners",
            "    maxconn 8000",
            "    hard-stop-after 30s",
            f"    lua-load {self.dir}/eas.lua",
            f"    log 127.0.0.1:{self.log_port} len 512 format raw local0 info" if self.request_log else "",
            "",
        ]

    def _frontend(self) -> list[str]:
        return [
            "frontend gateway",
            f"    bind {self.host}:{self.port}",
            # the declared length (held in the parsed message: cheaper than reading the header again)
            f"    http-request return status 413 content-type application/json string '{self._too_large_body()}'"
            f" if {{ req.body_size gt {self.max_body} }}",
            *self._routing(),
            *self._authentication(),
            self._use_backend(),
            "    default_backend be_notfound",
            "",
        ]

    def _use_backend(self) -> str:
        return f"    use_backend %[var(txn.eas_route),map_str({self.dir}/backends.map)]"

    def _checked_bodies(self) -> list[str]:
        return body_check.listener(self.dir, [*self._routing(), self._unknown_route()], self._use_backend())

    def _too_large_body(self) -> str:
        limit = f"{self.max_body / MB:g} MB"
        return (f'{{"code":"PayloadTooLarge","message":"the request body is over the gateway limit of {limit} '
                f'(eas server --max-body-mb)"}}')

    def _routing(self) -> list[str]:
        """What every request costs before its backend; the hot path of the gateway, kept short: each map is
        keyed by the route's path prefix ``/api/predict/<name>`` (the path's first four fields), so one fetch
        finds a route and a path outside the prefix finds none."""
        d = self.dir
        return [
            "    http-request set-var(txn.eas_route) path,field(1,/,4)",
            f"    http-request set-var(txn.eas_token) var(txn.eas_route),map_str({d}/tokens.map)",
            # a busy route logs a sample of its answers (the per-mille travels in the line, so the metrics weigh
            # it back); whatever is not an instance's plain answer (its errors, HAProxy's own 5xx, an abort)
            # is always logged and counts once: error counts stay exact
            f"    http-request set-var(txn.eas_keep) var(txn.eas_route),map_str_int({d}/sample.map,1000)",
            f"    http-response set-log-level silent if {{ rand(1000),sub(txn.eas_keep) ge 0 }} {_NOT_AN_ERROR}",
        ]

    def _unknown_route(self) -> str:
        return (f"    http-request return status 404 content-type application/json string '{NOT_FOUND_BODY}'"
                " if !{ var(txn.eas_token) -m found }")

    def _authentication(self) -> list[str]:
        """A token (header, ?token= or cookie) or EAS's request signature, each compared in constant time."""
        d = self.dir
        return [
            "    acl token_ok req.fhdr(Authorization),secure_memcmp(txn.eas_token)",
            # the common case ends the rules here: the checks below cost a token request nothing (an unknown
            # route has no token, so none matches it)
            "    http-request allow if token_ok",
            self._unknown_route(),
            # EAS's request signature (what the eas-prediction SDK sends): "EAS " + base64(HMAC-SHA1 keyed by
            # the token over method, body MD5, content type, Date and the path), the Date within the window
            "    acl signed req.fhdr(Authorization) -m beg \"EAS \"",
            "    http-request set-var(txn.eas_skew) req.fhdr(date),lua.eas_date_skew if signed",
            f"    acl date_fresh var(txn.eas_skew) -m int le {SIGNATURE_SKEW_SECONDS}",
            f"    http-request return status 401 content-type application/json string '{STALE_DATE_BODY}'"
            " if signed !date_fresh",
            f"    http-request set-var(txn.eas_key) var(txn.eas_route),map_str({d}/keys.map) if signed",
            "    http-request set-var(txn.eas_len) req.body_size if signed",
            "    acl body_whole req.body_len,sub(txn.eas_len) eq 0",
            "    http-request set-var(txn.eas_md5) req.body,digest(md5),hex,lower if signed body_whole",
            "    http-request set-var(txn.eas_md5) req.fhdr(content-md5),lower if signed !body_whole",
            '    http-request set-var-fmt(txn.eas_sig_in) "%[method]\\n%[var(txn.eas_md5)]\\n'
            '%[req.fhdr(content-type)]\\n%[req.fhdr(date)]\\n%[path]" if signed',
            '    http-request set-var-fmt(txn.eas_sig) "EAS %[var(txn.eas_sig_in),hmac(sha1,txn.eas_key),base64]"'
            " if signed",
            "    acl signature_ok req.fhdr(Authorization),secure_memcmp(txn.eas_sig)",
            # web apps in a browser: the link carries ?token=…, answered with a cookie scoped to the app's path
            "    acl query_token_ok url_param(token),secure_memcmp(txn.eas_token)",
            "    acl cookie_ok req.cook(eas_token),secure_memcmp(txn.eas_token)",
            f"    http-request return status 401 content-type application/json string '{UNAUTHORIZED_BODY}'"
            " if !signature_ok !query_token_ok !cookie_ok",
            body_check.frontend_rule(self.dir),  # a body past the buffer, to a service that checks none
            "    http-request set-var(txn.eas_set_cookie) bool(true) if query_token_ok",
            '    http-after-response add-header Set-Cookie "eas_token=%[var(txn.eas_token)]; '
            'Path=%[var(txn.eas_route)]; HttpOnly; SameSite=Lax" if { var(txn.eas_set_cookie) -m bool }',
        ]

    def _defaults(self) -> list[str]:
        secret = f"{self.log_secret} " if self.log_secret else ""
        return [
            "defaults",
            "    mode http",
            "    log global",
            f'    log-format "{secret}%b %s %ST %Ta %[var(txn.eas_keep)]"',
            "    option dontlognull",
            "    option redispatch",
            "    option idle-close-on-response",
            "    retries 3",
            "    option http-buffer-request",
            "    timeout connect 2s",
            "    timeout client 120s",
            "    timeout server 300s",
            "    timeout http-keep-alive 30s",
            "    timeout http-request 30s",
            f"    timeout queue {QUEUE_TIMEOUT}",
            f"    timeout check {CHECK_TIMEOUT_S}s",
            f"    default-server {CHECK} maxconn {SERVER_MAXCONN} maxqueue {SERVER_MAXQUEUE}",
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
    lines = [f"backend {backend.name}", "    balance roundrobin", _retry_on(backend)]
    if backend.http_check:
        lines += [f"    option httpchk GET {backend.http_check}", "    http-check expect status 200"]
    if backend.strip_prefix:
        # /api/predict/<name>/rest -> /rest, by fields rather than a regex (a few % of a busy gateway)
        lines.append("    http-request set-path /%[path,field(5,/,0)]")
    for s in sorted(backend.servers, key=lambda s: s.name):
        weight = 0 if s.state == DRAIN else s.weight
        flags = " disabled" if s.state == MAINT else ""
        lines.append(f"    server {s.name} {s.address} weight {weight}{flags}")
    lines.append("")
    return lines


def _retry_on(backend: Backend) -> str:
    """A request whose connection failed is tried again (``retries``, ``option redispatch``); one sent to an
    instance that closed without answering (killed mid-request) is sent again to another, where there is
    another. Resending needs a copy of every request (HAProxy copies its whole 16 KB buffer before it sends:
    about 2.5 us of its CPU a request, where a bare hop costs it about 30), and with one instance there is
    nowhere else to send it; nginx's ``proxy_next_upstream`` does not retry a lone server either."""
    return "    retry-on conn-failure empty-response" if len(backend.servers) > 1 else "    retry-on conn-failure"


def read_map(path: Path) -> dict[str, int]:
    """A map of routes to numbers (sample.map), by route name."""
    try:
        pairs = [line.split() for line in path.read_text().splitlines()]
    except OSError:
        return {}
    return {p[0].removeprefix(ROUTE_PREFIX): int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
