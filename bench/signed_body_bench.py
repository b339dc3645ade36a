"""What checking large signed bodies at the gateway costs an image service (not a test).

    .venv/bin/python -m bench.signed_body_bench [--rounds 5] [--no-write]

A real `eas server` runs tests/apps/echo_app.py as an image service. Bodies of 100 KB to 32 MB
are posted through the gateway with the bare token (HAProxy streams the body to the instance)
and with an EAS signature (past HAProxy's 16 KB buffer the gateway's Lua service reads the whole
body, checks its MD5 and hands it on through the internal listener): the median latency of each,
and HAProxy's resident memory after each size. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from airflow_eas.server.embedded import start_embedded
from airflow_eas.spec import parse_spec
from bench.docs_section import write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Signed bodies checked at the gateway"
SIZES = (100_000, 1_000_000, 10_000_000, 32_000_000)


def _haproxy_rss(data_dir: Path) -> int:
    master = psutil.Process(int((data_dir / "gateway" / "haproxy.pid").read_text().split()[0]))
    return sum(p.memory_info().rss for p in [master, *master.children()])


def _median_s(post, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        resp = post()
        times.append(time.perf_counter() - start)
        assert resp.status_code == 200, resp.text[:200]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.conftest import echo_spec, wait_running
    from tests.server.gateway.signing import signed_headers

    data_dir = Path(tempfile.mkdtemp(prefix="eas-signed-bench-"))
    server = start_embedded(data_dir)
    rows = []
    try:
        server.client.create(parse_spec(echo_spec("signed_bench")))
        info = wait_running(server.client, "signed_bench", 1)
        path = "/api/predict/signed_bench"
        session = requests.Session()
        rss_start = _haproxy_rss(data_dir)
        for size in SIZES:
            body = b"a" * size
            token = _median_s(lambda b=body: session.post(info.endpoint, data=b,
                                                          headers={"Authorization": info.token}), args.rounds)
            signed = _median_s(lambda b=body: session.post(info.endpoint, data=b,
                                                           headers=signed_headers(info.token, b, path)), args.rounds)
            rows.append((size, token, signed, _haproxy_rss(data_dir)))
        load = os.getloadavg()[0]
    finally:
        server.stop()
    lines = [
        SECTION, "",
        f"{time.strftime('%Y-%m-%d')}, `python -m bench.signed_body_bench --rounds {args.rounds}`: an image service "
        "(echo_app, which reads the body and sends it back); median latency through the gateway with the bare "
        "token (the body streamed through HAProxy) and with an EAS signature (past the 16 KB buffer the gateway's "
        "Lua service reads the whole body, checks its MD5 against the signed Content-MD5 header and hands it on "
        "through the internal listener). HAProxy's resident memory (master and worker) was "
        f"{rss_start / 2**20:.0f} MiB before the first request; load average {load:.1f} on "
        f"{os.cpu_count()} cores (other work beside it).", "",
        "| body | token | signed (checked) | extra | HAProxy RSS after |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, token, signed, rss in rows:
        lines.append(f"| {size / 1e6:g} MB | {token * 1000:.0f} ms | {signed * 1000:.0f} ms | "
                     f"{(signed - token) * 1000:+.0f} ms | {rss / 2**20:.0f} MiB |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
