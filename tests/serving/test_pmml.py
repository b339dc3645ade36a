"""The PMML processor: PMML files from a real exporter (nyoka), answered like the other built-ins."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("pypmml", reason="pypmml not installed (extra airflow-eas[pmml])")
nyoka = pytest.importorskip("nyoka", reason="nyoka not installed (needed to export the test models)")


def _export(estimator, X, y, path: Path, features: list[str]) -> Path:
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("model", estimator)]).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nyoka.skl_to_pmml(pipeline, features, "label", str(path))
    return path


@pytest.fixture(scope="module")
def iris_forest(tmp_path_factory, iris_data):
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris_data
    model = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    path = _export(model, X, y, tmp_path_factory.mktemp("pmml") / "forest.pmml", ["sl", "sw", "pl", "pw"])
    return model, path


def test_pmml_classifier_matches_scikit_learn(serve, iris_forest, iris_data) -> None:
    model, path = iris_forest
    X, _ = iris_data
    rows = X[::15].astype(float).tolist()
    server = serve({"name": "iris_pmml", "processor": "pmml", "model_path": f"file://{path}"})
    status, body = server.post({"instances": rows})
    assert status == 200, body
    doc = json.loads(body)
    assert doc["predictions"] == model.predict(rows).tolist()
    want = model.predict_proba(rows)
    assert all(abs(a - b) < 1e-9 for got, exp in zip(doc["probabilities"], want, strict=True)
               for a, b in zip(got, exp, strict=True)), (doc["probabilities"], want)
    # named fields, the gateway path; and clear 400s for rows that do not fit the model
    status, body = server.post([{"sl": 6.7, "sw": 3.0, "pl": 5.2, "pw": 2.3}], path="/api/predict/iris_pmml")
    assert status == 200
    assert json.loads(body)["predictions"] == [2]
    status, body = server.post({"instances": [[1.0, 2.0]]})
    assert status == 400
    assert b"row has 2 values; the model takes 4 (sl, sw, pl, pw)" in body
    status, body = server.post([{"sl": 1.0}])
    assert status == 400
    assert b"missing input field(s) sw, pl, pw" in body


def test_pmml_gradient_boosting_in_batches(serve, tmp_path: Path) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    path = _export(model, X, y, tmp_path / "gbm.pmml", [f"f{i}" for i in range(5)])
    server = serve({"name": "gbm", "processor": "pmml", "model_path": str(path),
                    "metadata": {"rpc": {"batching": True, "max_batch_size": 8, "max_batch_timeout": 20}}})
    rows = X[:40].tolist()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: server.post({"instances": [r]}), rows))
    assert all(status == 200 for status, _ in answers), answers[:3]
    got = [json.loads(body)["probabilities"][0][1] for _, body in answers]
    assert max(abs(a - b) for a, b in zip(got, model.predict_proba(rows)[:, 1], strict=True)) < 1e-9


def test_pmml_without_java_fails_clearly(serve, iris_forest) -> None:
    _, path = iris_forest
    env = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""}
    server = serve({"name": "nojava", "processor": "pmml", "model_path": str(path)}, env=env, ready=False)
    code = server.wait_exit()
    assert code != 0, server.stderr
    assert "no `java` is on PATH" in server.stderr, server.stderr
