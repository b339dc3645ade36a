"""Fixtures for the model-server tests: server processes and tiny models trained here."""

from __future__ import annotations

import pytest

from ._helpers import Served


@pytest.fixture
def serve(tmp_path):
    """``serve(spec, env=None, ready=True)`` starts a server (waiting for ready unless told not to)."""
    started: list[Served] = []

    def start(
        spec: dict, env: dict | None = None, ready: bool = True, execution: str | None = None
    ) -> Served:
        s = Served(spec, tmp_path, env, execution)
        started.append(s)
        if ready:
            s.wait_ready()
        return s

    yield start
    for s in started:
        s.stop()
