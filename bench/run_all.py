"""`make bench`: every benchmark, each writing its own section of docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys

for module in ("bench.gateway_bench", "bench.serving_bench", "bench.control_plane_bench"):
    print(f"== {module}", flush=True)
    subprocess.run([sys.executable, "-m", module], check=True)
