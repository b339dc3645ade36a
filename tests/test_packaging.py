"""The wheel as a user gets it: metadata a package index shows, the image files inside, and a clean
venv with only `airflow-eas[server,serving,sklearn]` running `eas server` and a processor deploy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from airflow_eas.server.embedded import free_port
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the checkout must not stand in for the installed package."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # a copy: building in place leaves build/ and *.egg-info in the checkout (which pip then takes as installed)
    src = shutil.copytree(ROOT, out / "src", ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "build", "*.egg-info", ".demo", ".bench", "tests", ".ruff_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300, env=_clean_env())
    if proc.returncode != 0 and "Could not find a version" in proc.stderr:
        pytest.skip(f"cannot fetch the build backend (setuptools>=77): {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(out.glob("airflow_eas-*.whl"))


def test_wheel_metadata_and_image_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = Parser().parsestr(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the license text ships"
    classifiers = meta.get_all("Classifier")
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers), "SPDX expression, no license classifier"
    assert any(u.startswith("Documentation, https://") for u in meta.get_all("Project-URL"))
    extras = set(meta.get_all("Provides-Extra"))
    assert {"provider", "server", "serving", "kubernetes", "sklearn", "xgboost", "lightgbm", "onnx", "pmml"} <= extras
    requires = meta.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith(("apache-airflow", "scikit-learn", "docker", "fastapi")) for r in core), core
    for f in ("Dockerfile", "Dockerfile.pmml", "Dockerfile.web-demo", "build-image.sh", "build.py",
              "requirements.txt", "web-demo.json", "web_demo.py"):
        assert f"airflow_eas/server/image/{f}" in names, f
    assert not any(n.startswith("tests/") for n in names)


def test_clean_venv_runs_server_and_a_processor(wheel: Path, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (make test installs it)")
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = _clean_env()
    proc = subprocess.run([str(bin_dir / "pip"), "install", "-q", f"{wheel}[server,serving,sklearn]"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    check = subprocess.run([str(bin_dir / "python"), "-c", "import airflow_eas, importlib.util as u; "
                            "print(airflow_eas.__file__, u.find_spec('airflow') is None)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    location, no_airflow = check.stdout.split()
    assert location.startswith(str(env_dir)), "the wheel's code"
    assert no_airflow == "True", "no Airflow"

    joblib.dump(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]), tmp_path / "model.joblib")
    spec = tmp_path / "svc.json"
    spec.write_text(json.dumps({"name": "wheel_svc", "processor": "sklearn",
                                "model_path": f"file://{tmp_path / 'model.joblib'}"}))
    data, api = tmp_path / "data", free_port()
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen([str(bin_dir / "eas"), "server", "--data-dir", str(data), "--api-port", str(api),
                                   "--gateway-port", str(free_port()),
                                   # the venv lies under root's 0700 tmp: instances run as root, as in every test
                                   "--instance-user", "root"], stdout=log, stderr=log, env=env, cwd=tmp_path)
    try:
        wait_until(lambda: (data / "admin_token").exists() or server.poll() is not None, 60, "admin token")
        assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        env.update(EAS_ENDPOINT=f"http://127.0.0.1:{api}", EAS_TOKEN=(data / "admin_token").read_text().strip())

        def eas(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(bin_dir / "eas"), *args], capture_output=True, text=True, env=env,
                                  cwd=tmp_path, timeout=60)

        wait_until(lambda: eas("list").returncode == 0, 30, "the API")
        # the images' builder ships with the server (`eas image build`; building is tests/docker's)
        res = eas("image", "build", "model-sever")
        assert res.returncode == 1
        assert res.stderr.startswith("eas: unknown image 'model-sever': choose from model-server,"), res.stderr
        assert eas("create", str(spec)).returncode == 0
        wait_until(lambda: json.loads(eas("desc", "wheel_svc", "--json").stdout)["status"] == "Running", 90,
                   "Running")
        res = eas("invoke", "wheel_svc", "--data", '{"instances": [[0.0], [3.0]]}')
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads(res.stdout)["predictions"] == [0, 1], res.stdout + res.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(40)
