"""The prebuilt images: every built-in processor answers from its model-server image, chosen by
`processor` (PMML from the -pmml variant), and the web-app demo deploys with one `eas create`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import requests

from airflow_eas.spec import parse_spec
from tests.conftest import wait_running

pytestmark = pytest.mark.docker
IMAGE_DIR = Path(__file__).resolve().parents[2] / "airflow_eas" / "server" / "image"


def _models(folder: Path) -> tuple[list[list[float]], dict[str, tuple[str, list]]]:
    """One small model per processor, saved as each processor reads it, and what each must answer."""
    joblib = pytest.importorskip("joblib")
    lightgbm = pytest.importorskip("lightgbm")
    xgboost = pytest.importorskip("xgboost")
    skl2onnx = pytest.importorskip("skl2onnx")
    nyoka = pytest.importorskip("nyoka")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    X, y = make_classification(n_samples=200, n_features=4, random_state=1)
    rows = X[:6].tolist()
    out: dict[str, tuple[str, list]] = {}
    sk = LogisticRegression().fit(X, y)
    joblib.dump(sk, folder / "model.joblib")
    out["sklearn"] = ("model.joblib", sk.predict(X[:6]).tolist())
    xgb = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    xgb.get_booster().save_model(str(folder / "model.json"))
    out["xgboost"] = ("model.json", xgb.predict(X[:6]).tolist())
    lgb = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    lgb.booster_.save_model(str(folder / "model.txt"))
    out["lightgbm"] = ("model.txt", lgb.predict(X[:6]).tolist())
    onx = skl2onnx.to_onnx(sk, X[:1].astype("float32"), options={id(sk): {"zipmap": False}})
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    out["onnx"] = ("model.onnx", sk.predict(X[:6]).tolist())
    tree = Pipeline([("model", DecisionTreeClassifier(max_depth=3, random_state=0))]).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nyoka.skl_to_pmml(tree, ["a", "b", "c", "d"], "label", str(folder / "model.pmml"))
    out["pmml"] = ("model.pmml", tree.predict(X[:6]).tolist())
    return rows, out


def test_every_builtin_processor_in_its_image(docker_server, model_server_images, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    rows, expected = _models(models)
    client = docker_server.client
    for processor, (file, _) in expected.items():
        client.create(parse_spec({
            "name": f"img_{processor}", "processor": processor, "model_path": f"file:///models/{file}",
            "storage": [{"mount_path": "/models", "local": {"path": str(models), "readOnly": True}}],
        }))
    try:
        for processor, (_, want) in expected.items():
            info = wait_running(client, f"img_{processor}", 1, timeout=120)
            resp = requests.post(info.endpoint, data=json.dumps({"instances": rows}),
                                 headers={"Authorization": info.token}, timeout=30)
            assert resp.status_code == 200, (processor, resp.text)
            assert [int(p) for p in resp.json()["predictions"]] == want, processor
        images = {c.labels["eas.service"]: c.image.tags for c in docker_server_containers(docker_server)}
        assert any(t.startswith("airflow-eas/model-server-pmml:") for t in images["img_pmml"]), images
        assert not any("-pmml" in t for t in images["img_sklearn"]), "only PMML pays for the JVM"
    finally:
        for processor in expected:
            client.delete(f"img_{processor}")


def docker_server_containers(server) -> list:
    import docker

    return docker.from_env().containers.list(filters={"label": f"eas.data_dir={server.data_dir.resolve()}"})


def test_web_demo_deploys_in_one_command(docker_server, web_demo_image: str) -> None:
    env = {**os.environ, "EAS_ENDPOINT": docker_server.endpoint, "EAS_TOKEN": docker_server.token}
    res = subprocess.run([sys.executable, "-m", "airflow_eas.cli", "create", str(IMAGE_DIR / "web-demo.json")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    client = docker_server.client
    try:
        info = wait_running(client, "web_demo", 1, timeout=90)
        page = requests.get(f"{info.endpoint}/", headers={"Authorization": info.token}, timeout=10)
        assert page.status_code == 200
        assert "airflow-eas web demo" in page.text
        scored = requests.post(f"{info.endpoint}/score", json={"features": [1, 2, 3.5]},
                               headers={"Authorization": info.token}, timeout=10)
        assert scored.json() == {"score": 6.5, "n": 3}
    finally:
        client.delete("web_demo")
