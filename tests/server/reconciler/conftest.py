"""A control loop's parts on a real store, with an in-memory runtime (instances are dicts, not processes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_eas.server.reconciler.background import Background
from airflow_eas.server.reconciler.gateway_sync import Sessions
from airflow_eas.server.reconciler.launcher import Launcher
from airflow_eas.server.reconciler.lifecycle import Lifecycle
from airflow_eas.server.reconciler.timings import Timings
from airflow_eas.server.runtimes.base import ExitStatus, LaunchRequest, Runtime, Usage
from airflow_eas.server.store import InstanceRow, Store
from airflow_eas.spec import ServiceSpec
from tests.conftest import echo_spec


class MemoryRuntime(Runtime):
    """Instances that run until told otherwise; records every signal."""

    name = "process"

    def __init__(self) -> None:
        self.exits: dict[str, ExitStatus] = {}
        self.signals: list[tuple[str, str]] = []

    def launch(self, request: LaunchRequest) -> str:
        return f"h-{request.instance_id}"

    def poll(self, handle: str) -> ExitStatus | None:
        return self.exits.get(handle)

    def terminate(self, handle: str) -> None:
        self.signals.append(("term", handle))

    def kill(self, handle: str) -> None:
        self.signals.append(("kill", handle))

    def adopt(self, handle: str) -> bool:
        return handle not in self.exits

    def usage(self, handle: str) -> Usage | None:
        return None if handle in self.exits else Usage(cpu_percent=0.0, memory_bytes=0)


class Rig:
    def __init__(self, tmp_path: Path, timings: Timings) -> None:
        self.store = Store(tmp_path / "state.db")
        self.runtime = MemoryRuntime()
        self.sessions = Sessions()
        self.background = Background(2, "test-observe")
        self.lifecycle = Lifecycle(
            self.store, self.runtime, Launcher(self.runtime, tmp_path), self.background, timings,
            lambda: self.sessions,
        )
        self.store.insert_service("svc", echo_spec("svc"), 1, "token", None)
        self.spec = ServiceSpec.model_validate(self.store.service("svc").spec)

    def instance(self, state: str, *, since_s: float = 0.0, handle: str = "h-svc-abc123") -> InstanceRow:
        now = time.time()
        inst = InstanceRow(
            id="svc-abc123", service="svc", version=1, port=1, handle=handle, state=state, in_gateway=True,
            restarts=0, started_at=now - since_s, ready_at=None, state_since=now - since_s,
        )
        self.store.insert_instance(inst)
        return inst

    def step(self, inst: InstanceRow, until: Callable[[], bool] | None = None, timeout: float = 5.0) -> None:
        """Advance ``inst`` tick by tick until ``until()`` (default: one observation taken in)."""
        deadline = time.monotonic() + timeout
        done = until or (lambda: True)
        while True:
            self.lifecycle.advance(self.store.service(inst.service), self.spec, inst)
            time.sleep(0.02)
            self.lifecycle.advance(self.store.service(inst.service), self.spec, inst)
            if done() or time.monotonic() > deadline:
                return


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path, Timings(drain_settle=0.05, drain_timeout=1.0, grace=0.3, backoff_base=0.5))
    try:
        yield r
    finally:
        r.background.shutdown()
