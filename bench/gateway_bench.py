"""Gateway benchmark: HAProxy in front of a real model instance vs calling it directly (not a test).

    .venv/bin/python -m bench.gateway_bench [--rounds 3] [--duration 10] [--no-write]

1. One sklearn processor instance (our model server) deployed by a real `eas server`;
   `wrk -t1 -c16` posts one-row JSON to the instance directly and through the gateway
   (token checked, path routed, request logged for metrics), alternated in each round.
2. What the per-request metrics cost HAProxy: two servers, request logs on and off, each
   in front of a static backend much faster than a model (a second HAProxy answering 200),
   so the gateway itself is the bottleneck.
Medians over the rounds; results go to the ``## Gateway`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from airflow_eas.server.embedded import EmbeddedServer, start_embedded
from airflow_eas.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".bench" / "gateway"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Gateway"
BODY = '{"instances": [[0.5, -1.2, 0.3, 2.1]]}'
STATIC_CFG = """global
    nbthread 1
defaults
    mode http
    timeout client 30s
    timeout server 30s
    timeout connect 2s
frontend static
    bind 127.0.0.1:"$PORT"
    http-request return status 200 content-type application/json string '{"predictions":[1]}'
"""


def wrk(url: str, token: str | None, connections: int, duration: int) -> dict:
    script = WORK / ("post_auth.lua" if token else "post.lua")
    text = (REPO / "bench" / "serving_post.lua").read_text()
    text = re.sub(r"wrk\.body = .*", lambda _: f"wrk.body = {json.dumps(BODY)}", text)
    if token:
        auth = f'wrk.headers["Authorization"] = "{token}"\n'
        text = text.replace('wrk.headers["Content-Type"]', auth + 'wrk.headers["Content-Type"]', 1)
    script.write_text(text)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    data = json.loads(out.split("WRKJSON ", 1)[1].splitlines()[0])
    return {
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "errors": data["errors"] + data["non2xx"],
    }


def _running(server: EmbeddedServer, name: str):
    client = server.client
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = client.describe(name)
        if info.status == "Running" and info.running_instances >= 1:
            return info
        if info.status == "Failed":
            raise SystemExit(f"{name} failed: {info.reason}")
        time.sleep(0.2)
    raise SystemExit(f"{name} did not become ready")


def model_service(server: EmbeddedServer):
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    model = LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    joblib.dump(model, WORK / "model.joblib")
    spec = {"name": "bench_model", "processor": "sklearn", "model_path": f"file://{WORK / 'model.joblib'}",
            "metadata": {"instance": 1}}
    server.client.create(parse_spec(spec))
    return _running(server, "bench_model")


def static_service(server: EmbeddedServer, name: str):
    cfg = WORK / "static.cfg"
    cfg.write_text(STATIC_CFG)
    spec = {"name": name, "containers": [{"image": "local", "command": f"haproxy -db -f {cfg}", "port": 8000}],
            "metadata": {"instance": 1}}
    server.client.create(parse_spec(spec))
    return _running(server, name)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    servers: list[EmbeddedServer] = []
    try:
        main_server = start_embedded(WORK / "eas")
        servers.append(main_server)
        info = model_service(main_server)
        direct = f"http://{info.instance_list[0].address}/"
        results: dict[str, list[dict]] = {"direct": [], "gateway": []}
        for r in range(args.rounds):
            for kind in ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct"):
                url, token = (direct, None) if kind == "direct" else (info.endpoint, info.token)
                results[kind].append(wrk(url, token, 16, args.duration))
                print(kind, results[kind][-1], flush=True)

        os.environ["EAS_GATEWAY_REQUEST_LOG"] = "off"
        quiet = start_embedded(WORK / "eas-nolog")
        servers.append(quiet)
        del os.environ["EAS_GATEWAY_REQUEST_LOG"]
        logged_info = static_service(main_server, "bench_static")
        quiet_info = static_service(quiet, "bench_static")
        cost: dict[str, list[dict]] = {"logs on": [], "logs off": []}
        for r in range(args.rounds):
            for kind in ("logs on", "logs off") if r % 2 == 0 else ("logs off", "logs on"):
                target = logged_info if kind == "logs on" else quiet_info
                cost[kind].append(wrk(target.endpoint, target.token, 16, args.duration))
                print(kind, cost[kind][-1], flush=True)
        counted = main_server.client.metrics("bench_static", 900).requests
        sent = sum(round(x["rps"] * args.duration) for x in cost["logs on"])
    finally:
        for server in servers:
            server.stop()

    d_rps, g_rps = median(results["direct"], "rps"), median(results["gateway"], "rps")
    on_rps, off_rps = median(cost["logs on"], "rps"), median(cost["logs off"], "rps")
    errors = sum(x["errors"] for runs in (*results.values(), *cost.values()) for x in runs)
    lines = [
        SECTION,
        "",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({platform.machine()}), "
        f"`python -m bench.gateway_bench`: `wrk -t1 -c16`, {args.duration} s runs, {args.rounds} rounds alternated, "
        "medians. HAProxy 2.6 started by `eas server`; everything (wrk, HAProxy, model server, control plane) "
        "shares the same 2 cores.",
        "",
        "Gateway vs direct, one sklearn processor instance (our model server):",
        "",
        "| path | c16 rps | ratio | c16 p50 | c16 p99 |",
        "|---|---|---|---|---|",
        f"| direct to the instance | {d_rps:,.0f} | 1.00 | {median(results['direct'], 'p50_ms'):.2f} ms | "
        f"{median(results['direct'], 'p99_ms'):.2f} ms |",
        f"| through the gateway (token, routing, metrics) | {g_rps:,.0f} | {g_rps / d_rps:.2f} | "
        f"{median(results['gateway'], 'p50_ms'):.2f} ms | {median(results['gateway'], 'p99_ms'):.2f} ms |",
        "",
        "What the per-request metrics cost the gateway (a static backend faster than the gateway, so HAProxy "
        "is the bottleneck; the log receiver in the control plane runs on the same cores; a route busier than "
        "1,000 requests/s logs a sample whose lines are weighed back, so the counts below are estimates at this "
        "speed and exact under it):",
        "",
        "| gateway | c16 rps | ratio |",
        "|---|---|---|",
        f"| request logs off | {off_rps:,.0f} | 1.00 |",
        f"| request logs on (metrics) | {on_rps:,.0f} | {on_rps / off_rps:.2f} |",
        "",
        f"Request lines counted by the metrics receiver in the 'logs on' runs: {counted:,} of about {sent:,} "
        f"sent. Errors (connect, read, timeouts, non-2xx) in all runs: {errors}.",
        "",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("\n".join(lines))


def write_section(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda _: text, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + text
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
