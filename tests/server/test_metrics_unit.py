"""The metrics collector's arithmetic: windows, percentiles, what counts for which service."""

from __future__ import annotations

from airflow_eas.server.metrics import MetricsCollector


def test_windows_percentiles_and_members() -> None:
    m = MetricsCollector()
    try:
        now = 1_000_000.0
        for i in range(100):  # 1..100 ms through the group, served by member a
            m.record(("group:g", "a"), False, i + 1, now=now - 5)
        for _ in range(10):
            m.record(("b",), True, 1000, now=now - 120)  # outside a 60 s window
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
        assert m.totals["group:fraud_grp"] == [2, 2]
        assert "gateway" not in m.totals
    finally:
        m.close()
