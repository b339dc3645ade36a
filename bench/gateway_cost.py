"""Where the gateway's cost goes, in measures that do not drift with the machine (not a test).

    .venv/bin/python -m bench.gateway_cost instructions [--requests 2000]
    .venv/bin/python -m bench.gateway_cost cpu [--pairs 6] [--duration 5]

``instructions``: HAProxy's user-space instructions per request under callgrind (one thread, no
master-worker), for the bare hop and for the gateway's own rendered config (one route, one image
instance, a sampled route as on a busy gateway), over the same nginx; N and 4N keep-alive requests
(``ab -k``), the difference divided by 3N, so start-up does not count.

``cpu``: CPU time per request of each process (the gateway's HAProxy, the bare one, nginx, wrk, the
control plane) in alternated bare/gateway runs, with the gateway started by a real `eas server` as
in bench.gateway_bench. Throughput on a shared 2-core machine drifts by a factor of 1.5 within a
minute; CPU per request and instruction counts show a change of a few percent that throughput hides.
Results are printed, for docs/benchmarks.md "Gateway: where its cost goes".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess

import psutil

from airflow_eas.server.embedded import free_port, start_embedded
from airflow_eas.server.gateway import Backend, GatewayConfig, GatewayState, Server
from bench import gateway_bench as gb

WORK = gb.REPO / ".bench" / "gateway_cost"
TOKEN = "t" * 32


def _wait_listening(port: int, seconds: float = 60) -> None:
    if not gb.listening(port, seconds):
        raise SystemExit(f"nothing listens on {port}")


def _nginx() -> tuple[subprocess.Popen, str]:
    port = free_port()
    conf = WORK / "nginx.conf"
    conf.write_text(gb.NGINX_CFG.format(dir=WORK).replace("PORT", str(port)))
    proc = subprocess.Popen(["nginx", "-c", str(conf)])
    _wait_listening(port)
    return proc, f"127.0.0.1:{port}"


def _gateway_config(upstream: str, log_port: int) -> tuple[str, int]:
    config = GatewayConfig(WORK / "gateway", "127.0.0.1", free_port(), log_port, log_secret="cost")
    config.dir.mkdir(parents=True, exist_ok=True)
    state = GatewayState(
        backends={"s_bench": Backend("s_bench", None, [Server("bench-1", upstream)], strip_prefix=True,
                                     gateway_checks_body=True)},
        routes={"bench": ("s_bench", TOKEN)},
    )
    # a route at about 20,000 requests/s logs 50 of every 1,000 (metrics.LINES_PER_SECOND)
    config.write(state, {"bench": 50})
    return config.cfg.read_text(), config.port


def _callgrind(cfg_text: str, port: int, url: str, token: str | None, requests: int) -> int:
    cfg = WORK / "callgrind.cfg"
    cfg.write_text(re.sub(r"^global\n", "global\n    nbthread 1\n", cfg_text.replace("    master-worker\n", "")))
    out = WORK / "callgrind.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "haproxy", "-db", "-f",
                             str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        body = WORK / "body.json"
        body.write_text(gb.BODY)
        cmd = ["ab", "-k", "-q", "-n", str(requests), "-c", "4", "-p", str(body), "-T", "application/json"]
        res = subprocess.run([*cmd, *(["-H", f"Authorization: {token}"] if token else []), url],
                             capture_output=True, text=True, check=True)
        if "Non-2xx" in res.stdout:
            raise SystemExit(f"non-2xx answers from {url}")
    finally:
        proc.send_signal(signal.SIGTERM)  # SIGINT leaves it running under valgrind
        proc.wait(120)
    totals = [line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
    return int(totals[-1].split()[1])


def instructions(requests: int) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes the log lines; nobody reads them
    receiver.bind(("127.0.0.1", 0))
    nginx, upstream = _nginx()
    try:
        bare_port = free_port()
        gateway_cfg, gateway_port = _gateway_config(upstream, receiver.getsockname()[1])
        cases = {
            "bare hop": (gb.BARE_CFG.format(port=bare_port, upstream=upstream), bare_port,
                         f"http://127.0.0.1:{bare_port}/api/predict/bench/x", None),
            "gateway": (gateway_cfg, gateway_port, f"http://127.0.0.1:{gateway_port}/api/predict/bench/x", TOKEN),
        }
        for name, (text, port, url, token) in cases.items():
            few = _callgrind(text, port, url, token, requests)
            many = _callgrind(text, port, url, token, 4 * requests)
            print(f"| {name} | {(many - few) / (3 * requests):,.0f} |", flush=True)
    finally:
        nginx.terminate()


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def cpu(pairs: int, duration: int) -> None:
    server = start_embedded(WORK / "eas")
    try:
        upstream = gb.nginx_service(server, "bench_nginx")
        bare, bare_url = gb.bare_hop(upstream.instance_list[0].address)
        control_plane = psutil.Process(server.process.pid)
        groups = {
            "control plane": [control_plane],
            "gateway HAProxy": [p for p in control_plane.children(recursive=True) if p.name() == "haproxy"],
            "bare HAProxy": [psutil.Process(bare.pid)],
            "nginx": [p for p in psutil.process_iter() if p.name() == "nginx"],
        }
        rows: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
        try:
            for r in range(pairs):
                for kind in ("bare", "gateway") if r % 2 == 0 else ("gateway", "bare"):
                    url, token = (bare_url, None) if kind == "bare" else (upstream.endpoint, upstream.token)
                    if kind == "gateway":
                        gb.wrk(url, token, 16, gb.WARM_UP_S)  # the log sampling settles
                    before, wrk_before = {k: _cpu_seconds(v) for k, v in groups.items()}, os.times()
                    run = gb.wrk(url, token, 16, duration)
                    after, wrk_after = {k: _cpu_seconds(v) for k, v in groups.items()}, os.times()
                    n = run["rps"] * duration
                    row = {k: (after[k] - before[k]) / n * 1e6 for k in groups}
                    row["wrk"] = (wrk_after.children_user + wrk_after.children_system
                                  - wrk_before.children_user - wrk_before.children_system) / n * 1e6
                    row["requests/s"] = run["rps"]
                    rows[kind].append(row)
        finally:
            bare.terminate()
        keys = [*groups, "wrk", "requests/s"]
        print("| run | " + " | ".join(f"{k} (us/request)" if k != "requests/s" else k for k in keys) + " |")
        print("|---" * (len(keys) + 1) + "|")
        for kind, runs in rows.items():
            print(f"| {kind} | " + " | ".join(f"{statistics.median(r[k] for r in runs):,.2f}" for k in keys) + " |")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=["instructions", "cpu"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    for tool in (["valgrind", "ab"] if args.measure == "instructions" else []) + ["haproxy", "nginx", "wrk"]:
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind apache2-utils haproxy nginx wrk)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if args.measure == "instructions":
        instructions(args.requests)
    else:
        cpu(args.pairs, args.duration)


if __name__ == "__main__":
    main()
