"""A broken store or a full disk is said in one line that names the file; never a traceback."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_eas.server.embedded import EmbeddedServer, free_port
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec


def _serve(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow_eas.cli", "server", "--data-dir", str(data_dir),
         "--api-port", str(free_port()), "--gateway-port", str(free_port())],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(("content", "says"), [(b"", "is empty (0 bytes)"),
                                               (b"this is not sqlite" * 300, "is not a usable state database")])
def test_an_empty_or_corrupt_store_is_refused_naming_the_file(tmp_path: Path, content: bytes, says: str) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(content)
    done = _serve(tmp_path)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(db) in lines[0], done.stderr
    assert says in lines[0], done.stderr
    assert db.read_bytes() == content, "the file is left as it was, for its owner to restore"


def test_files_holding_secrets_are_owner_only(eas_server) -> None:
    data = eas_server.data_dir
    for name in ("state.db", "state.db-wal", "admin_token"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    assert data.stat().st_mode & 0o777 == 0o711
    assert (data / "gateway").stat().st_mode & 0o777 == 0o700
    assert (data / "logs").stat().st_mode & 0o777 == 0o700


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_507_in_json(tiny_disk: Path) -> None:
    server = EmbeddedServer(tiny_disk / "eas", free_port(), free_port())
    server.data_dir.mkdir()
    server.start()
    try:
        filler = tiny_disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
        auth = {"Authorization": f"Bearer {server.token}"}
        spec = echo_spec("nospace", PAD="x" * 200_000)  # more than any page left free
        r = requests.post(f"{server.endpoint}/api/v2/services", json=spec, headers=auth, timeout=30)
        assert r.status_code == 507, r.text
        assert r.json()["code"] == "InsufficientStorage"
        assert "disk is full" in r.json()["message"]
        filler.unlink()
        r = requests.post(f"{server.endpoint}/api/v2/services", json=echo_spec("space"), headers=auth, timeout=30)
        assert r.status_code == 201, r.text
        requests.delete(f"{server.endpoint}/api/v2/services/space", headers=auth, timeout=30)
    finally:
        server.stop()


def test_the_cli_is_quiet_on_a_closed_pipe(eas_server) -> None:
    """`eas desc NAME | head`: the reader is gone before the CLI writes (deterministic: its end is closed)."""
    eas_server.client.create(parse_spec(echo_spec("piped")))
    env = {**os.environ, "EAS_ENDPOINT": eas_server.endpoint, "EAS_TOKEN": eas_server.token}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "airflow_eas.cli", "desc", "piped"], env=env, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 141
