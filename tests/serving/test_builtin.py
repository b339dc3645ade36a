"""Built-in processors served by real processes; missing extras and corrupt models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _check_classifier(server, expect_proba: bool = True) -> dict:
    status, body = server.post({"instances": ROWS})
    assert status == 200, body
    doc = json.loads(body)
    assert [int(p) for p in doc["predictions"]] == [0, 2]
    if expect_proba:
        assert len(doc["probabilities"]) == 2
        assert len(doc["probabilities"][0]) == 3
        assert abs(sum(doc["probabilities"][0]) - 1) < 1e-4
    return doc


def test_sklearn_processor(serve, sklearn_model):
    server = serve({"name": "iris", "processor": "sklearn", "model_path": str(sklearn_model)})
    doc = _check_classifier(server)
    # the gateway path, a bare list of rows, and a single flat row
    status, body = server.post(ROWS, path="/api/predict/iris")
    assert status == 200
    assert json.loads(body)["predictions"] == doc["predictions"]
    status, body = server.post(ROWS[1])
    assert status == 200
    assert json.loads(body)["predictions"] == [2]
    status, body = server.post(b"not json")
    assert status == 400
    assert b"not valid JSON" in body
    status, body = server.post({"instances": [[1, 2]]})
    assert status == 400
    assert b"cannot answer" in body
    metrics = server.metrics()
    assert metrics["requests"] == 5
    assert metrics["status"] == {"200": 3, "400": 2}
    assert metrics["errors"] == 0
    assert metrics["queue_length"] == 0
    assert metrics["latency_ms"]["p50"] > 0
    assert metrics["batches"] == 5
    assert metrics["mean_batch_size"] == 1


def test_sklearn_file_uri_and_folder(serve, sklearn_model):
    server = serve({"name": "iris", "processor": "sklearn", "model_path": f"file://{sklearn_model.parent}"})
    _check_classifier(server)


def test_xgboost_processor(serve, tmp_path, iris_data):
    xgboost = pytest.importorskip("xgboost", reason="xgboost not installed (extra airflow-eas[xgboost])")
    X, y = iris_data
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    model.save_model(tmp_path / "model.json")
    _check_classifier(
        serve({"name": "xgb", "processor": "xgboost", "model_path": str(tmp_path / "model.json")})
    )


def test_lightgbm_processor(serve, tmp_path, iris_data):
    lightgbm = pytest.importorskip("lightgbm", reason="lightgbm not installed (extra airflow-eas[lightgbm])")
    X, y = iris_data
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
    model.booster_.save_model(str(tmp_path / "model.txt"))
    _check_classifier(
        serve({"name": "lgb", "processor": "lightgbm", "model_path": str(tmp_path / "model.txt")})
    )


def test_onnx_processor(serve, tmp_path, iris_data):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (extra airflow-eas[onnx])")
    skl2onnx = pytest.importorskip(
        "skl2onnx", reason="skl2onnx not installed (needed to build the test model)"
    )
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data
    onx = skl2onnx.convert_sklearn(
        LogisticRegression(max_iter=500).fit(X, y), initial_types=[("x", FloatTensorType([None, 4]))]
    )
    (tmp_path / "model.onnx").write_bytes(onx.SerializeToString())
    _check_classifier(serve({"name": "onx", "processor": "onnx", "model_path": str(tmp_path / "model.onnx")}))


def test_missing_extra_names_the_extra(serve, tmp_path):
    # a shadow package makes `import xgboost` fail as it would where the extra is not installed
    shadow = tmp_path / "shadow" / "xgboost"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named xgboost')\n")
    (tmp_path / "model.json").write_text("{}")
    server = serve(
        {"name": "xgb", "processor": "xgboost", "model_path": str(tmp_path / "model.json")},
        env={"PYTHONPATH": str(tmp_path / "shadow")},
        ready=False,
    )
    assert server.wait_exit() != 0
    last = server.stderr.strip().splitlines()[-1]
    assert last.startswith("airflow-eas serving: processor 'xgboost' needs the xgboost library")
    assert "pip install 'airflow-eas[xgboost]'" in last


def test_corrupt_model_exits_with_reason_and_never_ready(serve, tmp_path):
    bad = tmp_path / "model.joblib"
    bad.write_bytes(b"\x80\x04this is not a pickle at all" * 10)
    server = serve({"name": "bad", "processor": "sklearn", "model_path": str(bad)}, ready=False)
    seen = set()
    end = time.monotonic() + 30
    while server.proc.poll() is None and time.monotonic() < end:
        seen.add(server.ready_status()[0])
        time.sleep(0.01)
    assert server.wait_exit() == 3
    assert 200 not in seen
    last = server.stderr.strip().splitlines()[-1]
    assert last.startswith("airflow-eas serving: cannot load sklearn model model.joblib:"), last


def test_missing_model_path(serve, tmp_path):
    server = serve(
        {"name": "gone", "processor": "sklearn", "model_path": str(tmp_path / "nope.joblib")}, ready=False
    )
    assert server.wait_exit() != 0
    assert "nope.joblib does not exist" in server.stderr.strip().splitlines()[-1]


def test_mounts_rewrite_model_path(serve, sklearn_model):
    env = {"EAS_MOUNTS": json.dumps({"/models": str(Path(sklearn_model).parent)})}
    server = serve(
        {"name": "mnt", "processor": "sklearn", "model_path": "file:///models/model.joblib"}, env=env
    )
    _check_classifier(server)
