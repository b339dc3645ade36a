"""The data plane: an HAProxy that ``eas server`` starts, configures and owns.

The gateway's desired state (:class:`GatewayState`: backends, their servers with
weights and admin states, and the routes with their tokens) is rendered into one
config file. Changes of *topology* (a backend or a server added or removed, a route
or token changed) are applied by a hitless master-worker reload; changes of weight
or admin state (ready / drain / maint) go through the runtime API, with no reload
and no lost request. HAProxy runs in its own session so it keeps serving while the
control plane restarts; a restarted control plane adopts it through its pid file.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from airflow_eas.errors import EasError

READY, DRAIN, MAINT = "ready", "drain", "maint"
NOT_FOUND_BODY = '{"code":"NotFound","message":"no such service or group"}'
UNAUTHORIZED_BODY = '{"code":"Unauthorized","message":"missing or wrong token in the Authorization header"}'
NO_SERVER_BODY = '{"code":"Unavailable","message":"no instance is serving"}'


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


@dataclass
class GatewayState:
    backends: dict[str, Backend] = field(default_factory=dict)
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (backend, token)

    def topology(self) -> tuple:
        return (
            tuple(sorted(
                (b.name, b.http_check, b.strip_prefix, tuple(sorted((s.name, s.address) for s in b.servers)))
                for b in self.backends.values()
            )),
            tuple(sorted(self.routes.items())),
        )

    def server_settings(self) -> dict[tuple[str, str], tuple[int, str]]:
        return {(b.name, s.name): (s.weight, s.state) for b in self.backends.values() for s in b.servers}


class Gateway:
    """Owns one HAProxy master process and its config under ``data_dir/gateway``."""

    def __init__(self, data_dir: Path, *, host: str, port: int, log_port: int) -> None:
        if shutil.which("haproxy") is None:
            raise EasError("HAProxy is not installed (the gateway): apt-get install haproxy")
        self.dir = data_dir / "gateway"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.log_port = host, port, log_port
        self.cfg = self.dir / "haproxy.cfg"
        self.pidfile = self.dir / "haproxy.pid"
        self.admin_sock = self.dir / "admin.sock"
        self.master_sock = self.dir / "master.sock"
        self._proc: subprocess.Popen | None = None
        # per-request logs feed the metrics; off only to measure what they cost (bench/gateway_bench.py)
        self.request_log = os.environ.get("EAS_GATEWAY_REQUEST_LOG", "on") != "off"
        # per route, how many requests per thousand are logged (absent: all); see set_sampling
        self.sampling: dict[str, int] = _read_map(self.dir / "sample.map")
        self._applied: GatewayState | None = None
        self.restarts = 0

    # -- process -------------------------------------------------------------------------

    @staticmethod
    def running_in(data_dir: Path) -> bool:
        """Whether an HAProxy started for this data dir still runs (to be adopted)."""
        try:
            pid = int((data_dir / "gateway" / "haproxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return _is_haproxy(pid)

    @property
    def master_pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        if not self.running_in(self.dir.parent):
            return None
        return int(self.pidfile.read_text().split()[0])

    def alive(self) -> bool:
        return self.master_pid is not None

    def ensure_running(self, state: GatewayState) -> bool:
        """Start HAProxy from ``state`` if it is not running (or adopt the one that is). True if started."""
        if self.alive():
            if self._applied is None:  # adopted after a restart of the control plane
                current = self.cfg.read_text() if self.cfg.exists() else ""
                if current == self.render(state):
                    self._applied = state  # it already serves exactly this: no reload needed
                else:
                    self._applied = GatewayState()
                    self.apply(state)
            return False
        self._write(state)
        self._validate()
        for path in (self.admin_sock, self.master_sock):
            path.unlink(missing_ok=True)
        log = open(self.dir / "haproxy.log", "ab")  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen(
            ["haproxy", "-W", "-S", str(self.master_sock), "-f", str(self.cfg), "-p", str(self.pidfile)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        self._wait_for(lambda: self._worker_pid() is not None, "HAProxy to start")
        self._applied = state
        return True

    def stop(self) -> None:
        pid = self.master_pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _is_haproxy(pid):
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self._proc = None
        self._applied = None

    # -- applying the desired state ----------------------------------------------------------

    def apply(self, state: GatewayState) -> None:
        applied = self._applied
        if applied is None:
            raise EasError("gateway is not running")
        if applied.topology() != state.topology():
            self._write(state)
            self._validate()
            self._reload()
        else:
            before = applied.server_settings()
            commands = []
            for (backend, server), (weight, admin) in state.server_settings().items():
                old_weight, old_admin = before.get((backend, server), (None, None))
                if weight != old_weight:
                    commands.append(f"set server {backend}/{server} weight {weight}")
                if admin != old_admin:
                    commands.append(f"set server {backend}/{server} state {admin}")
            if commands:
                self.runtime(commands)
                self._write(state)
        self._applied = state

    def set_sampling(self, keep: dict[str, int]) -> None:
        """Log only ``keep[route]`` of every 1000 requests of a busy route (1000 or absent: all).

        Per-request logs are what the metrics are made of, and at the gateway's full speed they
        would cost it a third of its throughput; a sample of a busy route costs next to nothing
        and, weighted back, gives the same counts and percentiles.
        """
        sample_map = self.dir / "sample.map"
        commands = []
        for route, per_mille in keep.items():
            if route in self.sampling:
                commands.append(f"set map {sample_map} {route} {per_mille}")
            else:
                commands.append(f"add map {sample_map} {route} {per_mille}")
        if commands:
            self.runtime(commands)
            self.sampling.update(keep)
            self._write_sampling()

    def _write_sampling(self) -> None:
        lines = "".join(f"{route} {n}\n" for route, n in sorted(self.sampling.items()))
        _atomic_write(self.dir / "sample.map", lines)

    def runtime(self, commands: list[str]) -> str:
        """Send commands to the current worker, through the master CLI (one connection, one batch).

        Never through the workers' own stats socket: during a reload it may still reach the
        old worker, and a weight set there would be lost with it.
        """
        return _unix_call(self.master_sock, "".join(f"@1 {c}; " for c in commands) + "quit\n")

    def sessions(self) -> dict[tuple[str, str], int]:
        """Current in-flight requests per (backend, server)."""
        out: dict[tuple[str, str], int] = {}
        try:
            text = self.runtime(["show stat -1 4 -1"])
        except OSError:
            return out
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            cols = line.split(",")
            if len(cols) > 4 and cols[4].isdigit():
                out[(cols[0], cols[1])] = int(cols[4])
        return out

    # -- internals ---------------------------------------------------------------------------

    def _worker_pid(self) -> int | None:
        try:
            info = self.runtime(["show info"])
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    def _reload(self) -> None:
        # the master's CLI socket is briefly gone while a previous reload re-executes the master: without
        # the current worker's pid we could not tell the new worker from the old one
        old: int | None = None

        def current_known() -> bool:
            nonlocal old
            old = self._worker_pid()
            return old is not None

        self._wait_for(current_known, "HAProxy's current worker to answer")
        pid = self.master_pid
        if pid is None:
            raise EasError("gateway is not running")
        os.kill(pid, signal.SIGUSR2)
        self._wait_for(lambda: (w := self._worker_pid()) is not None and w != old, "HAProxy to reload")
        # the old worker keeps accepting until the master tells it to stop: until then a new connection may
        # still meet the old config (a missing backend or server)
        self._wait_for(self._old_workers_stopping, "HAProxy's old workers to stop accepting")

    def _old_workers_stopping(self) -> bool:
        try:
            procs = _unix_call(self.master_sock, "show proc; quit\n").splitlines()
        except OSError:
            return False
        old = procs[procs.index("# old workers") + 1:] if "# old workers" in procs else []
        for line in old:
            if line.startswith("#"):
                break
            pid = line.split()[0] if line.split() else ""
            if not pid.isdigit():
                continue
            try:
                info = _unix_call(self.master_sock, f"@!{pid} show info; quit\n", timeout=1.0)
            except OSError:
                continue  # gone already
            if "Stopping: 1" not in info and "Pid:" in info:
                return False
        return True

    def _wait_for(self, predicate, what: str, timeout: float = 15.0) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(0.02)
        tail = _tail(self.dir / "haproxy.log", 5)
        raise EasError(f"timed out waiting for {what}; haproxy.log ends: {tail}")

    def _validate(self) -> None:
        res = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True)
        if res.returncode != 0:
            raise EasError(f"generated gateway config is invalid: {(res.stderr or res.stdout).strip()[-500:]}")

    def _write(self, state: GatewayState) -> None:
        tokens = "".join(f"{name} {token}\n" for name, (_, token) in sorted(state.routes.items()))
        backends = "".join(f"{name} {backend}\n" for name, (backend, _) in sorted(state.routes.items()))
        keys = "".join(
            f"{name} {base64.b64encode(token.encode()).decode()}\n" for name, (_, token) in sorted(state.routes.items())
        )
        _atomic_write(self.dir / "tokens.map", tokens, mode=0o600)
        _atomic_write(self.dir / "keys.map", keys, mode=0o600)
        self._write_sampling()
        _atomic_write(self.dir / "backends.map", backends)
        _atomic_write(self.cfg, self.render(state), mode=0o600)

    def render(self, state: GatewayState) -> str:
        d = self.dir
        lines = [
            "global",
            "    master-worker",
            f"    stats socket {self.admin_sock} mode 600 level admin expose-fd listeners",
            "    maxconn 8000",
            "    hard-stop-after 30s",
            f"    log 127.0.0.1:{self.log_port} len 512 format raw local0 info" if self.request_log else "",
            "",
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
            "backend be_notfound",
            f"    http-request return status 404 content-type application/json string '{NOT_FOUND_BODY}'",
            "",
        ]
        for backend in sorted(state.backends.values(), key=lambda b: b.name):
            lines += [f"backend {backend.name}", "    balance roundrobin"]
            if backend.http_check:
                lines += [f"    option httpchk GET {backend.http_check}", "    http-check expect status 200"]
            if backend.strip_prefix:
                lines.append("    http-request replace-path '/api/predict/[^/]+/?(.*)' '/\\1'")
            for s in sorted(backend.servers, key=lambda s: s.name):
                weight = 0 if s.state == DRAIN else s.weight
                flags = " disabled" if s.state == MAINT else ""
                lines.append(f"    server {s.name} {s.address} weight {weight}{flags}")
            lines.append("")
        return "\n".join(lines)


def _unix_call(path: Path, payload: str, timeout: float = 5.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        deadline = time.monotonic() + 2.0
        while True:  # the master re-binds its CLI socket on every reload: wait that moment out
            try:
                sock.connect(str(path))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        sock.sendall(payload.encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _read_map(path: Path) -> dict[str, int]:
    try:
        pairs = [line.split() for line in path.read_text().splitlines()]
    except OSError:
        return {}
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


def _is_haproxy(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return b"haproxy" in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _tail(path: Path, lines: int) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
