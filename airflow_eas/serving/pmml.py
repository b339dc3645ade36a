"""The PMML processor (``processor: "pmml"``): a PMML file answered like the other built-ins.

Rows are lists in the order of the model's input fields, or objects keyed by field name;
the answer is ``{"predictions": [...]}`` plus ``"probabilities"`` (one list per row, in
the order of the model's classes) for classification models.

The evaluator is pypmml (PMML4S on a JVM, over py4j), chosen after measuring it beside the
pure-Python sklearn-pmml-model (docs/benchmarks.md, "PMML evaluators", bench/pmml_bench.py):
the pure one installs lighter (no JVM) and scores large batches faster, but it refused a
multi-class logistic regression exported by nyoka and was off by 0.36 on a gradient-boosting
model's probabilities, where PMML4S gave the file's exact numbers. PMML exists to move models
between tools, so exactness decides; the price is a Java runtime where PMML is served and a
JVM round trip (~1 ms) per call. One JVM call per request batch: rows go over as one JSON
document in pandas' "split" layout, so neither side loops per row in Python.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from airflow_eas.serving.builtin import BadRequest, RowModelProcessor, missing_extra
from airflow_eas.serving.processor import StartupError


class PmmlProcessor(RowModelProcessor):
    name = "pmml"
    suffixes = (".pmml", ".xml")

    def load(self, path: Path) -> None:
        try:
            from pypmml import Model
        except ImportError as exc:
            raise missing_extra("pmml", "pypmml", "pmml", exc) from None
        if shutil.which("java") is None:
            raise StartupError(
                "processor 'pmml' evaluates models on a Java runtime, and no `java` is on PATH: install one "
                "(Debian: apt-get install openjdk-17-jre-headless) or use the airflow-eas/model-server-pmml image",
                3,
            )
        model = Model.fromFile(str(path))
        self.model = model
        self.inputs: list[str] = list(model.inputNames)
        fields = list(model.outputFields)
        predicted = [f.name for f in fields if f.feature == "predictedValue"]
        # the predicted value: an output field that says so, else the target itself (regression models)
        self._predicted = predicted[0] if predicted else model.targetName
        self._probability_columns: list[str] = []
        if model.functionName == "classification":
            by_class = {str(f.value): f.name for f in fields if f.feature == "probability" and f.value is not None}
            columns = [by_class.get(str(c)) for c in model.classes]
            if columns and all(columns):
                self._probability_columns = columns  # type: ignore[assignment]

    def predict(self, rows: list) -> tuple[list, list | None]:
        data = [self._row(r) for r in rows]
        out = json.loads(self.model.predict(json.dumps({"columns": self.inputs, "data": data})))
        columns = out["columns"]
        if self._predicted not in columns:
            raise ValueError(f"the model gave no {self._predicted!r} output (outputs: {', '.join(columns)})")
        at = columns.index(self._predicted)
        preds = [r[at] for r in out["data"]]
        if not self._probability_columns:
            return preds, None
        idx = [columns.index(c) for c in self._probability_columns]
        return preds, [[r[i] for i in idx] for r in out["data"]]

    def _row(self, row: Any) -> list:
        names = ", ".join(self.inputs)
        if isinstance(row, dict):
            missing = [f for f in self.inputs if f not in row]
            if missing:
                raise BadRequest(f"row is missing input field(s) {', '.join(missing)} (inputs: {names})")
            return [row[f] for f in self.inputs]
        if len(row) != len(self.inputs):
            raise BadRequest(f"row has {len(row)} values; the model takes {len(self.inputs)} ({names})")
        return row
