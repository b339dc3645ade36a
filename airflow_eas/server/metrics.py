"""Data-plane metrics: the requests the gateway forwards, from HAProxy's per-request log.

HAProxy sends one raw log line per request over UDP (``<secret> %b %s %ST %Ta <keep>``: a
secret made at each start, backend, server, status, total time in ms, and how many of every
1000 requests of that route are logged). Any local process can send to a UDP port of
127.0.0.1, so a line without the secret (only the gateway's 0600 config holds it) is dropped
and counted in :attr:`MetricsCollector.forged`; a unix datagram socket would have kept
strangers out too, but dropped up to half the lines here (``net.unix.max_dgram_qlen`` is 10).

**What counts as an error** (:func:`is_error`, the ``errors`` that canary analysis divides by
``requests``): every 5xx (503 included: no instance, or the queue wait ran out), 450 (the model
server's queue is full), 408 (a request waited past its ``keepalive``) and a request that got
no answer at all. Not errors: 429 (the caller went over the service's configured
``rate_limit``: shed on purpose, by the caller's own contract) and other 4xx (the caller's
mistake). Every status is also counted by itself (``statuses``), so 429s stay visible.

A receiver thread folds the lines into one-second buckets per service, each holding a count,
an error count, the statuses and a latency histogram, so percentiles over any window up to
:data:`RETENTION_SECONDS` cost a merge of small dicts and memory does not grow with traffic.
HAProxy's own exporter has only averages, hence the logs.

Logging every request would cost the gateway a third of its throughput at full speed, so a
busy route logs a sample (:meth:`MetricsCollector.sampling_plan`, applied by the gateway) and
each sampled line counts ``1000 / keep`` times: the same counts and percentiles, in
expectation, for a few percent of the cost. Routes under :data:`LINES_PER_SECOND` log every
request, so their numbers are exact. The sample is drawn from an instance's answers that are not
errors: every error (an instance's 5xx, 408 or 450, the gateway's own 503 or 504, a request that
got no answer) is logged whatever the sample and counts once, so error counts are exact on a
busy route too, which is what the canary guard and the analysis judge.
"""

from __future__ import annotations

import bisect
import hmac
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

RETENTION_SECONDS = 900
LINES_PER_SECOND = 1000  # per route: above this rate, log a sample (an instance's errors are always logged)
SERVICE_PREFIX, GROUP_PREFIX = "s_", "g_"
# upper bounds of the cumulative latency histogram that /metrics exposes (Prometheus's, in seconds)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BUCKETS_MS = [b * 1000 for b in LATENCY_BUCKETS_S]
BATCH_SECONDS = 0.02  # how long the receiver lets lines gather after the first, once lines come this often:
BUSY_LINES_PER_SECOND = 200  # (a busy gateway sends 1,000/s; a quieter one's lines are folded as they come)
MAX_BATCH = 1000
ERROR_4XX = frozenset({408, 450})  # the platform failed the request in time, not the caller


def is_error(status: int) -> bool:
    """Whether a forwarded request counts against a service's error rate (see the module's docstring)."""
    return status >= 500 or status <= 0 or status in ERROR_4XX


@dataclass
class _Bucket:
    second: int
    requests: float = 0.0  # weighted: a sampled line stands for 1000/keep requests
    errors: float = 0.0
    latency: Counter = field(default_factory=Counter)  # whole ms -> weighted count
    statuses: Counter = field(default_factory=Counter)  # status code -> weighted count


@dataclass
class Totals:
    """Everything counted for one key since the start: what /metrics exposes as counters."""

    requests: float = 0.0
    errors: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS_S) + 1))  # the last: +Inf
    seconds: float = 0.0  # the sum of the latencies

    def copy(self) -> Totals:
        return Totals(self.requests, self.errors, Counter(self.statuses), list(self.buckets), self.seconds)


@dataclass
class Window:
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    seconds: int
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "450", ... -> requests

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class MetricsCollector:
    """Receives the gateway's request log on a UDP port of 127.0.0.1; only lines that begin with
    ``secret`` count."""

    def __init__(self, port: int = 0, secret: str = "") -> None:
        self.secret = secret.encode()
        self.forged = 0  # lines dropped for a missing or wrong secret
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        try:
            self.sock.bind(("127.0.0.1", port))
        except OSError:  # the remembered port is taken: any port will do, the config follows
            self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._series: dict[str, deque[_Bucket]] = defaultdict(deque)
        self._totals: dict[str, Totals] = defaultdict(Totals)
        self._thread = threading.Thread(target=self._run, name="eas-metrics", daemon=True)
        self._keys: dict[tuple[bytes, bytes], tuple[str, ...]] = {}
        self._stop = False

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()

    def _run(self) -> None:
        recv = self.sock.recv
        second, lines_this_second, busy = 0, 0, False
        while not self._stop:
            try:
                lines = [recv(4096)]  # waits for the first line
                if busy:
                    # a busy gateway's lines gather for a moment and are folded in one go: a wake-up and a lock
                    # per batch rather than per line (the receiver shares the gateway's cores)
                    time.sleep(BATCH_SECONDS)
                while len(lines) < MAX_BATCH:
                    lines.append(recv(4096, socket.MSG_DONTWAIT))
            except BlockingIOError:
                pass
            except OSError:
                return
            self.record_lines(lines)
            now = int(time.monotonic())
            if now != second:
                busy, second, lines_this_second = lines_this_second >= BUSY_LINES_PER_SECOND, now, 0
            lines_this_second += len(lines)

    def record_line(self, line: bytes | str) -> None:
        self.record_lines([line.encode() if isinstance(line, str) else line])

    def record_lines(self, lines: list[bytes]) -> None:
        """Gateway log lines: ``<secret> <backend> <server> <status> <total ms> [<keep per mille>]``. The
        hot path of the data plane's metrics, hence bytes, the keys of each (backend, server) pair worked
        out once, and equal lines counted together before the lock is taken."""
        counted: Counter = Counter()
        for line in lines:
            parsed = self._parse(line)
            if parsed is not None:
                counted[parsed] += 1
        if not counted:
            return
        second = int(time.time())
        with self._lock:
            for (keys, code, ms, weight), n in counted.items():
                self._add(keys, code, ms, second, weight * n)

    def _parse(self, line: bytes) -> tuple[tuple[str, ...], int, int, float] | None:
        parts = line.split()
        if self.secret:
            if not parts or not hmac.compare_digest(parts[0], self.secret):
                self.forged += 1
                return None
            del parts[0]
        if len(parts) < 4:
            return None
        keep = 1000
        if len(parts) >= 5:
            last = parts.pop()  # "-" where the route is unknown (refused at the frontend)
            if last.isdigit():
                keep = max(int(last), 1)
        pair = (parts[-4], parts[-3])
        keys = self._keys.get(pair)
        if keys is None:
            keys = self._keys[pair] = _keys_of(pair[0].decode(errors="replace"), pair[1].decode(errors="replace"))
        if not keys:
            return None  # rejected at the frontend (401/404): not a service's request
        try:
            code = int(parts[-2])
            ms = max(int(parts[-1]), 0)
        except ValueError:
            return None
        # the gateway samples only an instance's plain answers: an error line is always sent, and counts once
        return keys, code, ms, 1.0 if is_error(code) else 1000 / keep

    def record(
        self, keys: tuple[str, ...] | list[str], status: int, ms: int, now: float | None = None, weight: float = 1.0
    ) -> None:
        with self._lock:
            self._add(keys, status, ms, int(now if now is not None else time.time()), weight)

    def _add(self, keys: tuple[str, ...] | list[str], status: int, ms: int, second: int, weight: float) -> None:
        error = is_error(status)
        for key in keys:
            series = self._series[key]
            if not series or series[-1].second != second:
                series.append(_Bucket(second))
                while series and series[0].second < second - RETENTION_SECONDS:
                    series.popleft()
            bucket = series[-1]
            bucket.requests += weight
            bucket.latency[ms] += weight
            bucket.statuses[status] += weight
            totals = self._totals[key]
            totals.requests += weight
            totals.statuses[status] += weight
            totals.buckets[bisect.bisect_left(_BUCKETS_MS, ms)] += weight
            totals.seconds += ms / 1000 * weight
            if error:
                bucket.errors += weight
                totals.errors += weight

    def sampling_plan(self, routes: list[str], current: dict[str, int], now: float | None = None) -> dict[str, int]:
        """The per-mille each route should log now, where it should change (a factor of 1.5 or more, or
        back to every request), from its rate over the last three seconds."""
        plan = {}
        last_full_second = (now if now is not None else time.time()) - 1  # the running second is partial
        with self._lock:
            # a route with no traffic kept and logging everything needs no look: at rest this costs nothing
            # however many routes there are
            busy = [r for r in routes if r in self._series or current.get(r, 1000) != 1000]
        for route in busy:
            rate = self.window(route, 3, now=last_full_second).requests / 3
            wanted = 1000 if rate <= LINES_PER_SECOND else max(1, round(1000 * LINES_PER_SECOND / rate))
            now = current.get(route, 1000)
            if wanted == now:
                continue
            if wanted == 1000 or max(wanted, now) / min(wanted, now) >= 1.5:
                plan[route] = wanted
        return plan

    def window(self, key: str, seconds: int, now: float | None = None) -> Window:
        seconds = max(1, min(int(seconds), RETENTION_SECONDS))
        until = int(now if now is not None else time.time())
        since = until - seconds
        requests = errors = 0.0
        hist: Counter = Counter()
        statuses: Counter = Counter()
        with self._lock:
            for bucket in reversed(self._series.get(key, ())):
                if bucket.second <= since:
                    break
                if bucket.second > until:
                    continue  # a window in the past (`now` given) ends there
                requests += bucket.requests
                errors += bucket.errors
                hist.update(bucket.latency)
                statuses.update(bucket.statuses)
        p50, p95, p99 = _percentiles(hist, requests, (0.50, 0.95, 0.99))
        counted = {str(code): round(n) for code, n in sorted(statuses.items()) if round(n)}
        return Window(round(requests), round(errors), p50, p95, p99, seconds, counted)

    def forget(self, key: str) -> None:
        with self._lock:
            self._series.pop(key, None)
            self._totals.pop(key, None)

    def totals(self) -> dict[str, Totals]:
        """A consistent copy of every key's counters since the start."""
        with self._lock:
            return {key: totals.copy() for key, totals in self._totals.items()}


def _keys_of(backend: str, server: str) -> tuple[str, ...]:
    """What one request counts for: its service, or its group and the member that served it."""
    if backend.startswith(SERVICE_PREFIX):
        return (backend[len(SERVICE_PREFIX):],)
    if backend.startswith(GROUP_PREFIX):
        group = f"group:{backend[len(GROUP_PREFIX):]}"
        member = server.partition(".")[0]
        return (group, member) if member and server != "<NOSRV>" else (group,)
    return ()


def _percentiles(hist: Counter, total: float, qs: tuple[float, ...]) -> list[float | None]:
    if not total:
        return [None for _ in qs]
    out: list[float | None] = []
    items = sorted(hist.items())
    for q in qs:
        rank = q * total - 1e-9  # weighted counts: the first latency whose cumulative weight reaches q
        seen = 0.0
        for ms, count in items:
            seen += count
            if seen >= rank:
                out.append(float(ms))
                break
    return out
