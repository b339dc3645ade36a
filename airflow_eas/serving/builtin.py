"""Built-in processors: sklearn, xgboost, lightgbm, onnx (pmml: serving/pmml.py). JSON rows in, JSON predictions out.

Input: ``{"instances": [[f1, f2, ...], ...]}`` or a bare list of rows (one flat row is
taken as one instance). Output: ``{"predictions": [...]}`` plus ``"probabilities"``
where the model has them. Each heavy library is an optional extra of airflow-eas.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_eas.errors import BadRequest, StartupError
from airflow_eas.serving.processor import BaseProcessor
from airflow_eas.serving.storage import find_model_file

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

# sklearn classifiers whose predict() is exactly classes_[argmax(predict_proba())]:
# for them one predict_proba call gives both answers (half the model time per request).
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "LogisticRegression",
        "LogisticRegressionCV",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "GaussianNB",
        "MultinomialNB",
        "BernoulliNB",
        "ComplementNB",
        "CategoricalNB",
        "KNeighborsClassifier",
        "MLPClassifier",
    }
)


def missing_extra(processor: str, module: str, extra: str, exc: BaseException) -> StartupError:
    return StartupError(
        f"processor {processor!r} needs the {module} library, which is not installed ({exc}): "
        f"pip install 'airflow-eas[{extra}]'",
        3,
    )


def parse_rows(data: bytes) -> list:
    try:
        doc = _loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    rows = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise BadRequest('expected {"instances": [[f1, f2, ...], ...]} or a list of rows')
    if not isinstance(rows[0], (list, dict)):
        rows = [rows]
    return rows


class RowModelProcessor(BaseProcessor):
    """A model that maps a 2-D array of rows to predictions (and maybe probabilities)."""

    name = "model"
    suffixes: tuple[str, ...] = ()

    def __init__(self, model_path: Path) -> None:
        self._eas_model_path = str(model_path)
        self.model_file: Path | None = None

    def initialize(self) -> None:
        self.model_file = find_model_file(Path(self._eas_model_path), self.suffixes, "model_path")
        try:
            self.load(self.model_file)
        except StartupError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say which and why
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StartupError(
                f"cannot load {self.name} model {self.model_file.name}: {type(exc).__name__}: {msg}", 3
            ) from None

    def load(self, path: Path) -> None:
        raise NotImplementedError

    def predict(self, rows: list) -> tuple[list, list | None]:
        raise NotImplementedError

    def process(self, data: bytes) -> tuple[bytes, int]:
        try:
            preds, probas = self.predict(parse_rows(data))
        except BadRequest as exc:
            return _dumps({"error": str(exc)}).encode(), 400
        except (ValueError, TypeError, IndexError) as exc:
            return _dumps({"error": f"the model cannot answer this input: {exc}"}).encode(), 400
        if probas is None:
            return _dumps({"predictions": preds}).encode(), 200
        return _dumps({"predictions": preds, "probabilities": probas}).encode(), 200

    def batch_process(self, bodies: list[bytes]) -> list[tuple[bytes, int]]:
        """One model call for all the requests' rows, split back per request."""
        if len(bodies) == 1:
            return [self.process(bodies[0])]
        out: list[Any] = [None] * len(bodies)
        rows: list = []
        spans = []
        for i, body in enumerate(bodies):
            try:
                r = parse_rows(body)
            except BadRequest as exc:
                out[i] = (_dumps({"error": str(exc)}).encode(), 400)
                continue
            spans.append((i, len(rows), len(rows) + len(r)))
            rows.extend(r)
        if spans:
            try:
                preds, probas = self.predict(rows)
            except Exception:  # noqa: BLE001 - one bad request must not fail the others: answer them one by one
                for i, _, _ in spans:
                    out[i] = self.process(bodies[i])
                return out
            for i, a, b in spans:
                doc = {"predictions": preds[a:b]}
                if probas is not None:
                    doc["probabilities"] = probas[a:b]
                out[i] = (_dumps(doc).encode(), 200)
        return out


class SklearnProcessor(RowModelProcessor):
    name = "sklearn"
    suffixes = (".joblib", ".pkl", ".pickle")

    def load(self, path: Path) -> None:
        try:
            import joblib
            import numpy as np
        except ImportError as exc:
            raise missing_extra("sklearn", "joblib/scikit-learn", "sklearn", exc) from None
        model = joblib.load(path)
        if not hasattr(model, "predict"):
            raise StartupError(
                f"cannot load sklearn model {path.name}: {type(model).__name__} has no predict()", 3
            )
        self.model = model
        self._np = np
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        has_proba = hasattr(model, "predict_proba") and hasattr(final, "classes_")
        self._proba = model.predict_proba if has_proba else None
        self._classes = getattr(final, "classes_", None)
        self._argmax = has_proba and type(final).__name__ in _ARGMAX_CLASSIFIERS

    def predict(self, rows: list) -> tuple[list, list | None]:
        X = rows if isinstance(rows[0], dict) else self._np.asarray(rows, dtype=float)
        if self._argmax:
            proba = self._proba(X)
            return self._classes.take(proba.argmax(axis=1)).tolist(), proba.tolist()
        preds = self.model.predict(X).tolist()
        return preds, (self._proba(X).tolist() if self._proba is not None else None)


class XGBoostProcessor(RowModelProcessor):
    name = "xgboost"
    suffixes = (".json", ".ubj", ".bst", ".model", ".joblib", ".pkl")

    def load(self, path: Path) -> None:
        try:
            import numpy as np
            import xgboost
        except ImportError as exc:
            raise missing_extra("xgboost", "xgboost", "xgboost", exc) from None
        self._np = np

        def native(file: Path) -> Any:
            booster = xgboost.Booster()
            booster.load_model(str(file))
            return booster

        self.booster = booster = _load_booster(
            path, "xgboost", xgboost.Booster, native, lambda m: m.get_booster() if hasattr(m, "get_booster") else m
        )
        self.objective = json.loads(booster.save_config())["learner"]["objective"]["name"]

    def predict(self, rows: list) -> tuple[list, list | None]:
        np = self._np
        out = self.booster.inplace_predict(np.asarray(rows, dtype=np.float32))
        return _split_objective(np, self.objective, out)


def _load_booster(
    path: Path, kind: str, booster_type: type, native: Callable[[Path], Any], unwrap: Callable[[Any], Any]
) -> Any:
    """A gradient-boosting booster from its native file, or from a pickled scikit-learn wrapper."""
    if path.suffix in (".joblib", ".pkl"):
        import joblib

        booster = unwrap(joblib.load(path))
    else:
        booster = native(path)
    if not isinstance(booster, booster_type):
        raise StartupError(f"cannot load {kind} model {path.name}: not a {kind} model", 3)
    return booster


def _split_objective(np: Any, objective: str, out: Any) -> tuple[list, list | None]:
    if (objective == "binary:logistic" or objective.split(" ")[0] == "binary") and out.ndim == 1:
        return (out > 0.5).astype(int).tolist(), np.stack([1 - out, out], axis=1).tolist()
    if objective.startswith(("multi:softprob", "multiclass")) and out.ndim == 2:
        return out.argmax(axis=1).tolist(), out.tolist()
    return out.tolist(), None


class LightGBMProcessor(RowModelProcessor):
    name = "lightgbm"
    suffixes = (".txt", ".model", ".lgb", ".joblib", ".pkl")

    def load(self, path: Path) -> None:
        try:
            import lightgbm
            import numpy as np
        except ImportError as exc:
            raise missing_extra("lightgbm", "lightgbm", "lightgbm", exc) from None
        self._np = np
        self.booster = booster = _load_booster(
            path,
            "lightgbm",
            lightgbm.Booster,
            lambda file: lightgbm.Booster(model_file=str(file)),
            lambda m: m.booster_ if hasattr(m, "booster_") else m,
        )
        self.objective = str(booster.params.get("objective") or booster.dump_model().get("objective", ""))

    def predict(self, rows: list) -> tuple[list, list | None]:
        np = self._np
        out = self.booster.predict(np.asarray(rows, dtype=np.float64))
        return _split_objective(np, self.objective, out)


class OnnxProcessor(RowModelProcessor):
    name = "onnx"
    suffixes = (".onnx",)
    _DTYPES = {
        "tensor(float)": "float32",
        "tensor(double)": "float64",
        "tensor(int64)": "int64",
        "tensor(int32)": "int32",
    }

    def load(self, path: Path) -> None:
        try:
            import numpy as np
            import onnxruntime
        except ImportError as exc:
            raise missing_extra("onnx", "onnxruntime", "onnx", exc) from None
        self._np = np
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1  # one request is a few rows: threads cost more than they give
        opts.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = np.dtype(self._DTYPES.get(inp.type, "float32"))
        self.outputs = [o.name for o in self.session.get_outputs()]

    def predict(self, rows: list) -> tuple[list, list | None]:
        np = self._np
        res = self.session.run(None, {self.input_name: np.asarray(rows, dtype=self.dtype)})
        preds = res[0]
        preds = preds.ravel().tolist() if preds.ndim == 2 and preds.shape[1] == 1 else preds.tolist()
        if len(res) < 2:
            return preds, None
        probas = res[1]
        if isinstance(probas, list):  # skl2onnx ZipMap: one {class: p} per row
            probas = [[row[k] for k in sorted(row)] for row in probas]
        else:
            probas = probas.tolist()
        return preds, probas


BUILTINS: dict[str, type[RowModelProcessor]] = {
    "sklearn": SklearnProcessor,
    "xgboost": XGBoostProcessor,
    "lightgbm": LightGBMProcessor,
    "onnx": OnnxProcessor,
}
