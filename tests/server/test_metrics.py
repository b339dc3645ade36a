"""The metrics collector's arithmetic: windows, percentiles, what counts for which service."""

from __future__ import annotations

import socket
import time

from airflow_eas.server.metrics import MetricsCollector


def test_windows_percentiles_and_members() -> None:
    m = MetricsCollector()
    try:
        now = 1_000_000.0
        for i in range(100):  # 1..100 ms through the group, served by member a
            m.record(("group:g", "a"), 200, i + 1, now=now - 5)
        for _ in range(10):
            m.record(("b",), 500, 1000, now=now - 120)  # outside a 60 s window
        w = m.window("a", 60, now=now)
        assert (w.requests, w.errors) == (100, 0)
        assert (w.p50_ms, w.p95_ms, w.p99_ms) == (50.0, 95.0, 99.0)
        assert m.window("group:g", 60, now=now).requests == 100
        assert m.window("b", 60, now=now).requests == 0
        assert m.window("b", 300, now=now).errors == 10
        assert m.window("nobody", 60, now=now).p99_ms is None, "no data is no number, never zero"
    finally:
        m.close()


def test_log_lines_map_to_services() -> None:
    m = MetricsCollector()
    try:
        m.record_line(b"s_fraud fraud-ab12cd 200 7")
        m.record_line(b"g_fraud_grp fraud_green.ab12cd 503 2")
        m.record_line(b"g_fraud_grp <NOSRV> 503 0")
        m.record_line(b"gateway <NOSRV> 401 0")  # refused at the door: nobody's request
        m.record_line(b"garbage")
        assert m.window("fraud", 60).requests == 1
        assert m.window("fraud_green", 60).errors == 1
        assert m.window("group:fraud_grp", 60).requests == 2
        totals = m.totals()
        assert (totals["group:fraud_grp"].requests, totals["group:fraud_grp"].errors) == (2, 2)
        assert "gateway" not in totals
    finally:
        m.close()


def test_sampled_lines_count_for_what_they_stand_for() -> None:
    m = MetricsCollector()
    try:
        # a route sampled at 50 per mille: each plain answer's line stands for 20 requests, and errors, which
        # the gateway always logs, count once
        for i in range(100):
            m.record_line(f"s_busy busy-1 {500 if i < 10 else 200} {i % 10} 50".encode())
        m.record_line(b"s_quiet quiet-1 200 3 1000")
        m.record_line(b"gateway <NOSRV> 404 0 -")
        busy = m.window("busy", 60)
        assert (busy.requests, busy.errors) == (90 * 20 + 10, 10)
        assert busy.p50_ms == 4.0
        assert busy.p99_ms == 9.0
        assert m.window("quiet", 60).requests == 1
    finally:
        m.close()


def test_sampling_plan_follows_the_rate() -> None:
    m = MetricsCollector()
    try:
        now = float(int(time.time()))
        for second in (4, 3, 2, 1):  # oldest first, as time goes
            for _ in range(50):  # 50 lines at 100 per mille: 500 requests/s, under the budget
                m.record(("calm",), 200, 1, now=now - second + 0.5, weight=10.0)
            m.record(("hot",), 200, 1, now=now - second + 0.5, weight=5000.0)  # 5,000 requests/s
        plan = m.sampling_plan(["calm", "hot", "idle"], {"calm": 100}, now=now)
        assert plan == {"calm": 1000, "hot": 200}, "a calm route logs everything again, a hot one a fifth"
        assert m.sampling_plan(["hot"], {"hot": 180}, now=now) == {}, "small changes are not worth a runtime call"
    finally:
        m.close()


def test_platform_made_failures_count_as_errors_and_every_status_by_itself() -> None:
    """Issue 12 #5: 450 "queue full" answers read as error rate 0.0 (99.9 % rejected, no error)."""
    m = MetricsCollector()
    try:
        for status in (200, 200, 450, 408, 503, 429, 404, -1):
            m.record_line(f"s_svc svc-1 {status} 3 1000".encode())
        w = m.window("svc", 60)
        assert (w.requests, w.errors) == (8, 4), "450, 408, 503 and no answer are errors; 429 and 404 are not"
        assert w.statuses == {"-1": 1, "200": 2, "404": 1, "408": 1, "429": 1, "450": 1, "503": 1}
    finally:
        m.close()


def test_lines_without_the_start_secret_are_dropped() -> None:
    """Issue 12 #5: 500 datagrams from any local process made a healthy service read error rate 1.0."""
    m = MetricsCollector(secret="s3cret")
    m.start()
    try:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(200):
            sender.sendto(b"s_svc svc-1 500 1 1000", ("127.0.0.1", m.port))  # no secret
            sender.sendto(b"guess s_svc svc-1 500 1 1000", ("127.0.0.1", m.port))  # a wrong one
        sender.sendto(b"s3cret s_svc svc-1 200 1 1000", ("127.0.0.1", m.port))
        deadline = time.monotonic() + 10
        while m.window("svc", 60).requests < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        w = m.window("svc", 60)
        assert (w.requests, w.errors) == (1, 0)
        assert m.forged == 400
    finally:
        m.close()
