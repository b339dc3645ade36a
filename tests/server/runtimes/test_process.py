"""The process runtime on real processes: what an instance gets, who it runs as, what bounds it, and
that nothing it started outlives a crash unnoticed."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from airflow_eas.server.runtimes.base import LaunchRequest
from airflow_eas.server.runtimes.limits import InstanceGroup, Limits
from airflow_eas.server.runtimes.process import OWNER_ENV, ProcessRuntime
from airflow_eas.server.runtimes.users import ServiceUsers
from airflow_eas.server.store import Store
from airflow_eas.spec import parse_spec
from tests.conftest import wait_until

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user (the test interpreter may not be)


def _request(tmp_path: Path, code: str, *, cpu: float | None = None, memory: int | None = None,
             env: dict[str, str] | None = None, name: str = "probe") -> LaunchRequest:
    metadata: dict = {"instance": 1}
    if cpu is not None:
        metadata["cpu"] = cpu
    if memory is not None:
        metadata["memory"] = memory
    command = f"{SYSTEM_PYTHON} -c {shlex.quote(code)}"
    spec = parse_spec({"name": name, "containers": [{"image": "local", "command": command}], "metadata": metadata})
    workdir = tmp_path / "services" / name / "v1"
    workdir.mkdir(parents=True, exist_ok=True)
    return LaunchRequest(f"{name}-{os.urandom(3).hex()}", spec, 0, {"PORT": "1", **(env or {})},
                         tmp_path / "logs" / f"{name}.log", workdir)


@pytest.fixture
def runtime() -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(owner=f"test-{os.urandom(4).hex()}")
    yield rt
    rt.end_unknown(set())


def _wait_exit(rt: ProcessRuntime, handle: str, timeout: float = 30):
    return wait_until(lambda: rt.poll(handle), timeout, "the instance to exit")


def test_an_instance_gets_its_spec_env_not_the_servers(runtime, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EAS_TOKEN", "admin-token-of-the-server")
    monkeypatch.setenv("EAS_OSS_ACCESS_KEY_SECRET", "oss-secret-of-the-server")
    request = _request(tmp_path, "import os,time; time.sleep(30)", env={"MODEL_KEY": "mine"})
    handle = runtime.launch(request)
    env = psutil.Process(int(handle.split(":")[0])).environ()
    runtime.kill(handle)
    assert env["MODEL_KEY"] == "mine"
    assert env["PORT"] == "1"
    assert env[OWNER_ENV] == runtime.owner
    assert "EAS_TOKEN" not in env
    assert "EAS_OSS_ACCESS_KEY_SECRET" not in env
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "HOME", "PORT", "MODEL_KEY", OWNER_ENV}, env


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_under_root_an_instance_runs_unprivileged_and_cannot_read_the_servers_secrets() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="eas-user-", dir="/tmp"))  # pytest's own folders are 0700
    secret = tmp_path / "state.db"
    secret.write_text("every token")
    secret.chmod(0o600)
    tmp_path.chmod(0o711)
    rt = ProcessRuntime(owner="test-user", users=ServiceUsers(Store(tmp_path / "uids.db").service_uid))
    code = (f"import os; print('uid', os.getuid()); print(open('spec.json').read());\n"
            f"try: open({str(secret)!r}).read(); print('READ')\nexcept PermissionError: print('DENIED')")
    request = _request(tmp_path, code)
    (request.workdir / "spec.json").write_text("{}")
    (request.workdir / "spec.json").chmod(0o600)
    status = _wait_exit(rt, rt.launch(request))
    log = request.log_path.read_text()
    assert status.code == 0, log
    assert "uid 0" not in log, log
    assert "DENIED" in log, log
    assert "READ" not in log, log
    assert "{}" in log, "the instance reads its own spec"
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.skipif(not InstanceGroup("probe", Limits(None, 64)).dirs, reason="no writable cgroups here")
def test_memory_over_the_limit_is_killed_and_the_reason_says_so(runtime, tmp_path) -> None:
    request = _request(tmp_path, "x = bytearray(400 * 1024 * 1024); print('survived')", memory=64)
    status = _wait_exit(runtime, runtime.launch(request))
    assert "killed for memory" in status.describe(), status
    assert "64 MiB" in status.describe(), status
    assert "survived" not in request.log_path.read_text()


@pytest.mark.skipif(not InstanceGroup("probe", Limits(0.5, None)).dirs, reason="no writable cgroups here")
def test_cpu_is_bounded_by_metadata_cpu(runtime, tmp_path) -> None:
    code = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\nprint('cpu', time.process_time())"
    request = _request(tmp_path, code, cpu=0.25)
    _wait_exit(runtime, runtime.launch(request))
    used = float(request.log_path.read_text().split("cpu", 1)[1])
    # 1.5 s of wall time at a quarter of a core: about 0.4 s of CPU, never the 1.5 s it asked for
    assert used < 0.8, used


def test_memory_without_cgroups_falls_back_to_rlimit(tmp_path) -> None:
    group = InstanceGroup("probe", Limits(None, 64), root=tmp_path)  # a host without cgroups
    assert group.enforced_by == "rlimit"


def test_a_process_started_by_a_server_but_never_recorded_is_swept(runtime, tmp_path) -> None:
    handle = runtime.launch(_request(tmp_path, "import time; time.sleep(60)"))
    pid = int(handle.split(":")[0])
    restarted = ProcessRuntime(owner=runtime.owner)  # the server after a crash: it knows no handle
    assert ProcessRuntime(owner="someone-else").end_unknown(set()) == [], "another server's processes are not ours"
    assert restarted.end_unknown({handle}) == [], "a recorded instance is adopted, not killed"
    assert restarted.end_unknown(set()) == [pid]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and runtime.poll(handle) is None:
        time.sleep(0.05)
    assert runtime.poll(handle) is not None


def test_readiness_is_the_instances_own_listener_not_whoever_took_its_port(runtime, tmp_path) -> None:
    """The Docker rolling-update race: a port picked free was taken by another program before the instance
    bound it, the TCP probe answered for that program, and an old version served after "Running"."""
    import socket

    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        squatted = runtime.launch(_request(tmp_path, "import time; time.sleep(30)", name="squatted"))
        assert runtime.listens(squatted, port) is False, "someone else's listener is not the instance's"
    code = ("import os, socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(os.environ['PORT'])))\n"
            "s.listen()\ntime.sleep(30)")
    request = _request(tmp_path, code, name="own")
    request.env["PORT"] = str(port)
    own = runtime.launch(request)
    assert wait_until(lambda: runtime.listens(own, port), 10, "the instance to listen")
