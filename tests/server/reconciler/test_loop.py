"""The loop isolates failures: one service's error is recorded on it, the others are reconciled."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from airflow_eas.errors import InvalidSpec
from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.server.store import Store
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_running, wait_until
from tests.server.test_platform import _pid_listening

UNBALANCED = 'python3 -c "print(1)'


def test_an_unbalanced_quote_in_command_is_a_400_naming_the_field(eas_server) -> None:
    spec = echo_spec("unbalanced")
    spec["containers"][0]["command"] = UNBALANCED
    with pytest.raises(InvalidSpec, match=r"containers\.0\.command: .*cannot be split"):
        eas_server.client.create(parse_spec(spec))
    with pytest.raises(InvalidSpec, match=r"containers\.0\.command"):
        parse_spec(spec)


def test_a_spec_that_cannot_launch_fails_alone_and_others_are_still_restarted(tmp_path: Path) -> None:
    """A spec stored before commands were validated (an older server accepted it) used to break every
    pass; now it is Failed with the reason and a killed instance of another service is restarted."""
    server = EmbeddedServer(tmp_path / "eas", free_port(), free_port())
    server.data_dir.mkdir()
    bad = echo_spec("broken")
    bad["containers"][0]["command"] = UNBALANCED
    seed = Store(server.data_dir / "state.db")
    seed.insert_service("broken", bad, 1, "broken-token-123", None)
    seed.close()
    server.start()
    try:
        client = server.client
        client.create(parse_spec(echo_spec("healthy")))
        info = wait_running(client, "healthy", 1)
        failed = wait_until(lambda: (i := client.describe("broken")).status == "Failed" and i, 30, "broken Failed")
        assert "No closing quotation" in failed.reason, failed.reason

        pid = _pid_listening(info.instance_list[0].address)
        os.kill(pid, signal.SIGKILL)

        def restarted():
            now = client.describe("healthy")
            return now.status == "Running" and now.instance_list[0].restarts == 1 and now

        wait_until(restarted, 30, "the killed instance of the healthy service to be restarted")
        client.delete("broken")
        client.delete("healthy")
        wait_until(lambda: not client.list(), 30, "both services to be deleted")
    finally:
        server.stop()
