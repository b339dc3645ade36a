"""EAS metadata.rpc semantics: keepalive (408), max_queue_size (450), rate_limit (429), batching."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from ._helpers import custom_spec, write_processor

SLOW = """
import time
from airflow_eas.serving import BaseProcessor

class Proc(BaseProcessor):
    def process(self, data):
        time.sleep(float(data or 0))
        return b"ok", 200
"""

BATCHED = """
import json, threading
from airflow_eas.serving import BaseProcessor

class Proc(BaseProcessor):
    def initialize(self):
        self.sizes = []
    def process(self, data):
        return {"size": 1}, 200
    def batch_process(self, bodies):
        self.sizes.append(len(bodies))
        return [({"size": len(bodies)}, 200) for _ in bodies]
"""


def _rpc(**rpc) -> dict:
    return {"metadata": {"rpc": rpc}}


def test_keepalive_timeout_answers_408(serve, tmp_path):
    server = serve(custom_spec("slow", write_processor(tmp_path / "c", SLOW), **_rpc(keepalive=200)))
    t0 = time.monotonic()
    status, _ = server.post(b"1.0")
    assert status == 408
    assert time.monotonic() - t0 < 0.8  # answered at keepalive, not when the call ends
    assert server.post(b"0")[0] == 200
    assert server.metrics()["status"]["408"] == 1


def test_queue_full_answers_450(serve, tmp_path):
    spec = custom_spec(
        "slow", write_processor(tmp_path / "c", SLOW), **_rpc(worker_threads=1, max_queue_size=2)
    )
    server = serve(spec)
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: server.post(b"0.3")[0], range(8)))
    assert statuses.count(450) >= 4, statuses
    assert 200 in statuses
    assert server.metrics()["queue_length"] == 0


def test_rate_limit_answers_429(serve, tmp_path):
    server = serve(custom_spec("fast", write_processor(tmp_path / "c", SLOW), **_rpc(rate_limit=5)))
    statuses = [server.post(b"0")[0] for _ in range(20)]
    assert statuses.count(429) >= 10, statuses
    assert 5 <= statuses.count(200) <= 8, statuses
    time.sleep(0.5)
    assert server.post(b"0")[0] == 200  # tokens come back over time


def test_batching_gathers_concurrent_requests(serve, tmp_path):
    rpc = _rpc(batching=True, max_batch_size=8, max_batch_timeout=50, worker_threads=1)
    server = serve(custom_spec("batch", write_processor(tmp_path / "c", BATCHED), **rpc))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: server.post(b"x"), range(32)))
    sizes = [json.loads(body)["size"] for status, body in results if status == 200]
    assert len(sizes) == 32
    assert max(sizes) > 1
    assert max(sizes) <= 8
    metrics = server.metrics()
    assert metrics["mean_batch_size"] > 1
    assert metrics["execution"].startswith("batching")


def test_batching_builtin_one_model_call_for_many(serve, sklearn_model):
    rpc = {"batching": True, "max_batch_size": 16, "max_batch_timeout": 20}
    server = serve(
        {"name": "iris", "processor": "sklearn", "model_path": str(sklearn_model), "metadata": {"rpc": rpc}}
    )
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: server.post({"instances": [rows[i % 2]]}), range(48)))
    for i, (status, body) in enumerate(results):
        assert status == 200
        assert json.loads(body)["predictions"] == [0 if i % 2 == 0 else 2]  # each gets its own rows back
    assert server.post(b"garbage")[0] == 400
    assert server.metrics()["mean_batch_size"] > 1


def test_threads_execution_for_builtin(serve, sklearn_model):
    server = serve(
        {"name": "iris", "processor": "sklearn", "model_path": str(sklearn_model)}, execution="threads"
    )
    status, body = server.post({"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert status == 200
    assert json.loads(body)["predictions"] == [0]
    assert server.metrics()["execution"] == "threads"
