"""docker-compose.yaml: the file validates (compose 1.29, and v2 where installed) and refuses to run
without its secrets; the Airflow commands parse with Airflow's own CLI; eas-server's command runs
as written; and the whole stack comes up with Debian's docker-compose, reports healthy, and a
rollout DAG triggered through Airflow's REST API puts a new model version behind the gateway."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from airflow_eas.server.embedded import free_port
from tests.conftest import wait_until
from tests.docker.conftest import build_or_skip, model_server_image

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}
SECRETS = ("EAS_ADMIN_TOKEN", "AIRFLOW_DB_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
           "AIRFLOW_FERNET_KEY")
DAG_ID = "compose_rollout"
# The example DAGs' rollout (dags/eas_asset_release.py: group churn, file:///models/churn/...) made quick:
# one step, no bake, a 10 s analysis window fed by the test's own traffic.
DAG_FILE = """
from airflow_eas.dags import build_rollout_dag

dag = build_rollout_dag({
    "dag_id": "compose_rollout", "group": "churn", "retries": 0,
    "service": {"processor": "sklearn", "model_path": "file:///models/churn/latest/model.joblib",
                "metadata": {"instance": 1}},
    "warmup": {"data_path": "file:///models/churn/warmup.jsonl", "count": 1},
    "strategy": "canary", "steps": [100], "bake_seconds": 0,
    "analysis": {"window_seconds": 10, "min_requests": 5, "max_error_rate": 0.05, "timeout_seconds": 120,
                 "poll_seconds": 1},
    "scale_down_delay_seconds": 0, "timeouts": {"ready_seconds": 180},
})
"""


def _secrets(models: Path) -> dict[str, str]:
    return {
        "EAS_ADMIN_TOKEN": secrets.token_hex(24), "AIRFLOW_DB_PASSWORD": secrets.token_hex(12),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(64), "AIRFLOW_API_SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(), "EAS_MODELS_DIR": str(models),
    }


def _interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default}, ${VAR:?error} and $$, with the variables unset unless given."""
    env = env or {}

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg

    value = re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)
    return value.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_clis() -> list[list[str]]:
    clis = []
    if shutil.which("docker-compose"):
        clis.append(["docker-compose"])
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        clis.append(["docker", "compose"])
    return clis


def test_compose_file_validates_and_requires_its_secrets(compose: dict, tmp_path: Path) -> None:
    services = compose["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "eas-server"}
    assert all(s.get("network_mode") == "host" for s in services.values()), "one network: the host's"
    env = _secrets(tmp_path)
    for name in AIRFLOW_SERVICES:
        spec = services[name]
        assert spec["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        conn = _interpolate(spec["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env)
        assert conn == f"postgresql+psycopg2://airflow:{env['AIRFLOW_DB_PASSWORD']}@127.0.0.1:5432/airflow"
        assert spec["image"] == services["eas-server"]["image"] == "airflow-eas/airflow:latest"
        volumes = [_interpolate(v, env) for v in spec["volumes"]]
        assert f"{tmp_path}:/models" in volumes, "models where the example DAGs look (file:///models/...)"
        assert "airflow-logs:/opt/airflow/logs" in volumes
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-apiserver"):
        assert services[name]["healthcheck"]["test"], name
    assert "DagProcessorJob" in str(services["airflow-dag-processor"]["healthcheck"]["test"])
    assert "TriggererJob" in str(services["airflow-triggerer"]["healthcheck"]["test"])
    # every secret is required: no default anywhere in the file
    text = COMPOSE.read_text()
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}:\?", text), f"{name} is not required"
        assert not re.search(rf"\$\{{{name}:-", text), f"{name} has a default"
    eas = services["eas-server"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in eas["volumes"]
    data = [_interpolate(v) for v in eas["volumes"] if "airflow-eas" in v]
    assert data == ["/var/lib/airflow-eas:/var/lib/airflow-eas"], "the data dir has the same path on both sides"
    for cli in _compose_clis():
        clean = {k: v for k, v in os.environ.items() if k not in env}
        ok = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={**clean, **env})
        assert ok.returncode == 0, f"{' '.join(cli)}: {ok.stderr}"
        missing = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                                 timeout=60, cwd=ROOT, env={**clean, **env, "EAS_ADMIN_TOKEN": ""})
        assert missing.returncode != 0, missing.stderr
        assert "EAS_ADMIN_TOKEN" in missing.stderr, missing.stderr


def test_airflow_commands_parse_and_the_connection_reaches_eas_server(compose: dict, tmp_path: Path) -> None:
    services = compose["services"]
    commands = {name: services[name]["command"] for name in sorted(AIRFLOW_SERVICES)}
    env = _secrets(tmp_path)
    conn = _interpolate(services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_EAS_DEFAULT"], env)
    script = (
        "import json, sys\n"
        "from airflow.cli.cli_parser import get_parser\n"
        "parser = get_parser()\n"
        "funcs = {n: parser.parse_args(a).func.__name__ for n, a in json.loads(sys.argv[1]).items()}\n"
        "from airflow_eas.hooks.eas import EasHook\n"
        "hook = EasHook()\n"
        "print(json.dumps({'funcs': funcs, 'endpoint': hook.endpoint, 'token': hook.connection.password}))\n"
    )
    run_env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW_CONN_EAS_DEFAULT": conn}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                          env=run_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["funcs"] == {"airflow-apiserver": "api_server", "airflow-dag-processor": "dag_processor",
                            "airflow-init": "migratedb", "airflow-scheduler": "scheduler",
                            "airflow-triggerer": "triggerer"}
    assert out["endpoint"] == "http://127.0.0.1:8600"
    assert out["token"] == env["EAS_ADMIN_TOKEN"], "Airflow holds eas-server's admin token"


def _eas_server_env(service: dict, env: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(str(v), env) for k, v in service["environment"].items() if v is not None}


@pytest.mark.docker
def test_eas_server_command_runs_as_written(compose: dict, docker_client, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    service = compose["services"]["eas-server"]
    api, gateway = free_port(), free_port()
    secrets_env = _secrets(tmp_path)
    env = _eas_server_env(service, {**secrets_env, "EAS_API_PORT": str(api), "EAS_GATEWAY_PORT": str(gateway),
                                    "EAS_DATA_DIR": str(tmp_path / "data")})
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(["/bin/sh", "-c", _interpolate(service["command"][0])],
                                env={**os.environ, **env, "PATH": path}, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
    try:
        def info() -> dict | None:
            try:
                resp = requests.get(f"http://127.0.0.1:{api}/api/v2/info", timeout=2,
                                    headers={"Authorization": f"Bearer {secrets_env['EAS_ADMIN_TOKEN']}"})
                return resp.json() if resp.status_code == 200 else None
            except requests.RequestException:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                return None

        got = wait_until(info, 30, "eas-server to answer")
        assert got["runtime"] == "docker"
        assert got["gateway"] == f"http://127.0.0.1:{gateway}"
        assert (tmp_path / "data" / "admin_token").stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(40)


# -- the whole stack ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[dict]:
    """The stack up under a project name of its own, on free ports; `down -v` removes only what it made."""
    if not shutil.which("docker-compose"):
        pytest.skip("Debian's docker-compose is not installed (make docker installs it)")
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    build_or_skip("compose", "the compose images")

    root = tmp_path_factory.mktemp("compose")
    models = root / "models"
    (models / "churn" / "latest").mkdir(parents=True)
    joblib.dump(LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], [0, 0, 1, 1]),
                models / "churn" / "latest" / "model.joblib")
    (models / "churn" / "warmup.jsonl").write_text('{"instances": [[0.5, 0.5]]}\n')
    dags = root / "dags"
    dags.mkdir()
    (dags / "compose_rollout.py").write_text(DAG_FILE)
    env = {**_secrets(models), "EAS_DATA_DIR": str(root / "eas-data"), "EAS_MODEL_SERVER_IMAGE": model_server_image(),
           "AIRFLOW_DAGS_DIR": str(dags)}
    ports = {"AIRFLOW_API_PORT", "AIRFLOW_DB_PORT", "AIRFLOW_SCHEDULER_HEALTH_PORT", "AIRFLOW_WORKER_LOG_PORT",
             "AIRFLOW_TRIGGER_LOG_PORT", "EAS_API_PORT", "EAS_GATEWAY_PORT"}
    env.update({p: str(free_port()) for p in ports})
    project = f"eastest{secrets.token_hex(4)}"
    full_env = {**os.environ, **env}
    cli = ["docker-compose", "-p", project, "-f", str(COMPOSE)]
    began = time.monotonic()
    up = subprocess.run([*cli, "up", "-d"], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=600)
    print(f"compose stack: up -d returned after {time.monotonic() - began:.0f} s")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield {"env": env, "project": project, "cli": cli, "full_env": full_env, "root": root}
    finally:
        if up.returncode != 0 or os.environ.get("EAS_KEEP_LOGS"):
            logs = subprocess.run([*cli, "logs", "--no-color", "--tail", "40"], capture_output=True, text=True,
                                  cwd=ROOT, env=full_env, timeout=60)
            (root / "compose.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*cli, "down", "-v", "--timeout", "60"], capture_output=True, cwd=ROOT, env=full_env,
                       timeout=300)
        # model containers of this stack's eas-server (it stops them itself; this is for a failed run)
        for c in docker_client.api.containers(all=True, filters={"label": f"eas.data_dir={env['EAS_DATA_DIR']}"}):
            docker_client.api.remove_container(c["Id"], force=True)


def _health(stack: dict) -> dict[str, str]:
    out = {}
    for c in subprocess.run([*stack["cli"], "ps", "-q"], capture_output=True, text=True, cwd=ROOT,
                            env=stack["full_env"]).stdout.split():
        info = json.loads(subprocess.run(["docker", "inspect", c], capture_output=True, text=True).stdout)[0]
        name = info["Config"]["Labels"].get("com.docker.compose.service", "")
        out[name] = (info["State"].get("Health") or {}).get("Status") or info["State"]["Status"]
    return out


def _traffic(env: dict[str, str], stop: threading.Event) -> None:
    """A few requests a second to group churn's endpoint, once the group exists."""
    eas = f"http://127.0.0.1:{env['EAS_API_PORT']}/api/v2/groups/churn"
    url = f"http://127.0.0.1:{env['EAS_GATEWAY_PORT']}/api/predict/churn"
    token = None
    while not stop.wait(0.2):
        try:
            if token is None:
                resp = requests.get(eas, headers={"Authorization": f"Bearer {env['EAS_ADMIN_TOKEN']}"}, timeout=5)
                token = resp.json()["token"] if resp.ok else None
                continue
            requests.post(url, json={"instances": [[1.0, 1.0]]}, headers={"Authorization": token}, timeout=5)
        except requests.RequestException:
            pass


@pytest.mark.docker
@pytest.mark.timeout(900)  # the stack's start (in the fixture) counts too: ~3 min on 2 busy cores
def test_stack_comes_up_healthy_and_a_rollout_dag_serves_the_new_model(stack: dict) -> None:
    env = stack["env"]
    began = time.monotonic()
    wanted = {"postgres", "eas-server", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
              "airflow-triggerer"}

    def healthy() -> dict | None:
        states = _health(stack)
        return states if all(states.get(s) == "healthy" for s in wanted) else None

    try:
        wait_until(healthy, 420, "every service healthy")
    except AssertionError:
        raise AssertionError(f"not healthy: {_health(stack)}") from None
    print(f"compose stack: healthy after {time.monotonic() - began:.0f} s more")
    api = f"http://127.0.0.1:{env['AIRFLOW_API_PORT']}/api/v2"
    session = requests.Session()

    def call(method: str, path: str, **kwargs: object) -> dict | None:
        """One API call; None while the (busy) api-server does not answer in time."""
        try:
            resp = session.request(method, f"{api}{path}", timeout=30, **kwargs)
        except requests.RequestException:
            return None
        return resp.json() if resp.ok else None

    token = wait_until(lambda: call("GET", "/../../auth/token"), 60, "a token")["access_token"]  # all-admins
    session.headers["Authorization"] = f"Bearer {token}"
    wait_until(lambda: call("GET", f"/dags/{DAG_ID}"), 180, f"{DAG_ID} parsed by the dag-processor")
    assert call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = call("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {}})
    assert run, "the run was not created"

    def finished() -> dict | None:
        got = call("GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}")
        return got if got and got["state"] in ("success", "failed") else None

    stop = threading.Event()
    threading.Thread(target=_traffic, args=(env, stop), daemon=True).start()  # what the analysis judges
    try:
        done = wait_until(finished, 360, "the rollout run to finish")
    finally:
        stop.set()
    tis = call("GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances") or {"task_instances": []}
    assert done["state"] == "success", {t["task_id"]: t["state"] for t in tis["task_instances"]}

    headers = {"Authorization": f"Bearer {env['EAS_ADMIN_TOKEN']}"}
    group = requests.get(f"http://127.0.0.1:{env['EAS_API_PORT']}/api/v2/groups/churn", headers=headers,
                         timeout=10).json()
    resp = requests.post(f"http://127.0.0.1:{env['EAS_GATEWAY_PORT']}/api/predict/churn",
                         json={"instances": [[0.0, 0.0], [3.0, 3.0]]}, headers={"Authorization": group["token"]},
                         timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == [0, 1], resp.text
    print(f"compose stack: healthy, DAG run and serving in {time.monotonic() - began:.0f} s")
