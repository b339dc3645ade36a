"""HAProxy's own record of a gateway's servers, read through the master CLI, for tests."""

from __future__ import annotations

from pathlib import Path

from airflow_eas.server.gateway.runtime import MasterCli


def server_stats(data_dir: Path, backend: str) -> list[dict[str, str]]:
    """HAProxy's own record of each server: status and how many times it went from UP to DOWN."""
    text = MasterCli(data_dir / "gateway" / "master.sock").run(["show stat"])
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
    return [r for r in rows if r.get("pxname") == backend and r.get("svname") not in ("FRONTEND", "BACKEND")]
