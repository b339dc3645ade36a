"""Model-server benchmark: our server vs a bare uvicorn+starlette handler vs MLServer (not a test).

    .venv/bin/python -m bench.serving_bench [--rounds 3] [--duration 10] [--no-write]

One small scikit-learn LogisticRegression (4 features), one-row JSON requests posted by
``wrk -t1`` (Lua script). Servers run one at a time under load, alternated within each
round; medians over the rounds. MLServer (``mlserver`` + ``mlserver-sklearn``) lives in
its own venv ``.bench/mlserver-venv``, created here on first use (``uvloop<0.22``: newer
uvloop crashes MLServer 1.7). Results go to the ``## Model server`` section of
``docs/benchmarks.md`` (other sections are kept as they are).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".bench" / "serving"
MLSERVER_VENV = REPO / ".bench" / "mlserver-venv"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Model server"
ROW = [0.5, -1.2, 0.3, 2.1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua(path: Path, body: str) -> Path:
    text = (REPO / "bench" / "serving_post.lua").read_text()
    text = re.sub(r"wrk\.body = .*", lambda _: f"wrk.body = {json.dumps(body)}", text)
    path.write_text(text)
    return path


# -- the servers -----------------------------------------------------------------------


class Server:
    def __init__(self, name: str, cmd: list[str], url: str, ready_url: str, script: Path, env=None, cwd=None):
        self.name, self.cmd, self.url, self.ready_url, self.script = name, cmd, url, ready_url, script
        self.env, self.cwd = env, cwd
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None
        self.rss_mib: float | None = None
        self.log = WORK / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.log"

    def start(self) -> None:
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd or REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),
            start_new_session=True,
        )
        while time.monotonic() - t0 < 120:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}; see {self.log}")
            if self._is_ready():
                self.ready_s = time.monotonic() - t0
                return
            time.sleep(0.01)
        raise SystemExit(f"{self.name} not ready after 120 s; see {self.log}")

    def _is_ready(self) -> bool:
        try:
            if self.ready_url == self.url:  # bare: one real prediction
                req = urllib.request.Request(self.url, data=json.dumps({"instances": [ROW]}).encode())
            else:
                req = urllib.request.Request(self.ready_url)
            with urllib.request.urlopen(req, timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def measure_rss(self) -> None:
        """RSS of the process and its children, MiB."""
        pids = [self.proc.pid]
        try:
            out = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
            )
            pids += [int(p) for p in out.stdout.split()]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        self.rss_mib = total / 1024

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def wrk(server: Server, conns: int, duration: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "-s", str(server.script), server.url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    m = re.search(r"WRKJSON (\{.*\})", out)
    if not m:
        raise SystemExit(f"wrk gave no result for {server.name}:\n{out}")
    res = json.loads(m.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    if res["non2xx"] or res["errors"]:
        print(f"  warning: {server.name} c{conns}: {res['non2xx']} non-2xx, {res['errors']} socket errors")
    return res


def ensure_mlserver() -> Path:
    bin_ = MLSERVER_VENV / "bin" / "mlserver"
    if bin_.exists():
        return bin_
    import sklearn

    print(f"creating {MLSERVER_VENV} (mlserver, mlserver-sklearn, uvloop<0.22) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run(
        [
            str(MLSERVER_VENV / "bin" / "pip"),
            "install",
            "-q",
            "mlserver",
            "mlserver-sklearn",
            "uvloop<0.22",
            f"scikit-learn=={sklearn.__version__}",
        ],
        check=True,
    )
    return bin_


def build(duration: int) -> tuple[list[Server], dict[str, Server]]:
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    WORK.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(n_samples=500, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    model = WORK / "model.joblib"
    joblib.dump(LogisticRegression().fit(X, y), model)
    (WORK / "warmup.jsonl").write_text(json.dumps({"instances": [ROW]}) + "\n")
    body = json.dumps({"instances": [ROW]})
    script = lua(WORK / "post.lua", body)
    py = sys.executable

    def ours(name: str, rpc: dict, execution: str = "auto") -> Server:
        port = free_port()
        spec = {
            "name": "bench",
            "processor": "sklearn",
            "model_path": str(model),
            "warm_up_data_path": str(WORK / "warmup.jsonl"),
            "metadata": {"warm_up_count": 10, "rpc": rpc},
        }
        spec_file = WORK / f"spec-{name.split()[-1].strip('()')}.json"
        spec_file.write_text(json.dumps(spec))
        cmd = [
            py,
            "-m",
            "airflow_eas.serving",
            "--spec",
            str(spec_file),
            "--port",
            str(port),
            "--execution",
            execution,
        ]
        return Server(
            name, cmd, f"http://127.0.0.1:{port}/api/predict/bench", f"http://127.0.0.1:{port}/ready", script
        )

    port = free_port()
    bare = Server(
        "bare uvicorn+starlette",
        [py, "-m", "bench.serving_bare", str(model), str(port)],
        f"http://127.0.0.1:{port}/",
        f"http://127.0.0.1:{port}/",
        script,
    )

    mls_bin = ensure_mlserver()
    mdir = WORK / "mlserver"
    (mdir / "iris").mkdir(parents=True, exist_ok=True)
    (mdir / "iris" / "model.joblib").write_bytes(model.read_bytes())
    mport = free_port()
    (mdir / "settings.json").write_text(
        json.dumps(
            {
                "http_port": mport,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,
                "host": "127.0.0.1",
                "debug": False,
            }
        )
    )
    (mdir / "iris" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    v2 = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]})
    mls = Server(
        "MLServer",
        [str(mls_bin), "start", str(mdir)],
        f"http://127.0.0.1:{mport}/v2/models/iris/infer",
        f"http://127.0.0.1:{mport}/v2/models/iris/ready",
        lua(WORK / "post-v2.lua", v2),
        env={"PATH": f"{mls_bin.parent}:{os.environ['PATH']}"},
    )

    main = [ours("airflow-eas (auto)", {}), ours("airflow-eas (threads)", {}, "threads"), bare, mls]
    batching = {
        "off": main[0],
        "on": ours(
            "airflow-eas (batching)", {"batching": True, "max_batch_size": 32, "max_batch_timeout": 0}
        ),
    }
    return main, batching


def median(values):
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per wrk run at 16 and 64 connections"
    )
    parser.add_argument("--c1-duration", type=int, default=5, help="seconds per wrk run at 1 connection")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone"
    )
    args = parser.parse_args()
    servers, batching = build(args.duration)
    everyone = servers + [batching["on"]]
    results: dict[str, dict[str, list]] = {
        s.name: {"rps": [], "p99": [], "p50": [], "rps64": []} for s in everyone
    }
    try:
        for s in everyone:
            s.start()
            s.measure_rss()
            print(f"{s.name}: ready in {s.ready_s:.2f} s, RSS {s.rss_mib:.0f} MiB", flush=True)
            wrk(s, 16, 2)  # a short warm-up of the HTTP path before measuring
        for r in range(args.rounds):
            for s in servers:
                c16 = wrk(s, 16, args.duration)
                c1 = wrk(s, 1, args.c1_duration)
                results[s.name]["rps"].append(c16["rps"])
                results[s.name]["p99"].append(c16["p99_us"] / 1000)
                results[s.name]["p50"].append(c1["p50_us"] / 1000)
                print(
                    f"round {r + 1} {s.name}: c16 {c16['rps']:.0f} rps p99 {c16['p99_us'] / 1000:.2f} ms, "
                    f"c1 p50 {c1['p50_us'] / 1000:.3f} ms",
                    flush=True,
                )
            for s in (batching["off"], batching["on"]):
                c64 = wrk(s, 64, args.duration)
                results[s.name]["rps64"].append(c64["rps"])
                print(
                    f"round {r + 1} {s.name}: c64 {c64['rps']:.0f} rps p99 {c64['p99_us'] / 1000:.2f} ms",
                    flush=True,
                )
        for s in everyone:
            s.measure_rss()
    finally:
        for s in everyone:
            s.stop()
    table = render(servers, batching, results, args)
    print(table)
    if not args.no_write:
        write_section(table)
        print(f"written to {DOC.relative_to(REPO)} under {SECTION!r}")


def render(servers, batching, results, args) -> str:
    bare = median(results["bare uvicorn+starlette"]["rps"])
    mls = median(results["MLServer"]["rps"])
    ours = median(results["airflow-eas (auto)"]["rps"])
    lines = [
        SECTION,
        "",
        f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}, {platform.system()} {platform.release()}), "
        "`python -m bench.serving_bench`: one scikit-learn "
        "LogisticRegression (4 features), one-row JSON, `wrk -t1` with a Lua POST script, "
        f"servers alternated in each of {args.rounds} rounds, medians. rps and p99 at 16 connections "
        f"({args.duration} s runs), p50 at 1 connection ({args.c1_duration} s runs). "
        "RSS after the runs; ready = process start to ready.",
        "",
        "| server | c16 rps | vs bare | c1 p50 | c16 p99 | RSS | start to ready |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in servers:
        r = results[s.name]
        rps = median(r["rps"])
        lines.append(
            f"| {s.name} | {rps:,.0f} | {rps / bare:.2f}x | {median(r['p50']):.3f} ms | "
            f"{median(r['p99']):.2f} ms | {s.rss_mib:.0f} MiB | {s.ready_s:.2f} s |"
        )
    off, on = median(results[batching["off"].name]["rps64"]), median(results[batching["on"].name]["rps64"])
    lines += [
        "",
        f"airflow-eas vs MLServer at 16 connections: {ours / mls:.2f}x; vs bare: {ours / bare:.2f}x.",
        "airflow-eas (auto) runs built-in processors inline on the event loop (the model call is ~0.1 ms);",
        "(threads) hands each call to `worker_threads` threads; MLServer runs with parallel_workers=0",
        "and answers the V2 protocol (its own request body); our rows also return probabilities.",
        "",
        "Dynamic batching at 64 connections (`batching: true, max_batch_size: 32, max_batch_timeout: 0`):",
        "",
        "| airflow-eas | c64 rps |",
        "|---|---|",
        f"| batching off | {off:,.0f} |",
        f"| batching on | {on:,.0f} ({on / off:.2f}x) |",
        "",
    ]
    return "\n".join(lines)


def write_section(table: str) -> None:
    """Replace (or append) the ``## Model server`` section, leaving every other section as it is."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: table + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + table
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
