"""PMML evaluators beside scikit-learn: exactness, load time and speed, in process.

``python -m bench.pmml_bench [--no-write]``. Models are trained here and exported by nyoka;
each evaluator scores them: pypmml (PMML4S on a JVM, the one ``processor: "pmml"`` uses,
measured through ``PmmlProcessor.predict``), sklearn-pmml-model (pure Python, measured
when importable: ``pip install sklearn-pmml-model``) and the scikit-learn model itself.
Results go to the ``## PMML evaluators`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.docs_section import write_section

SECTION = "## PMML evaluators"
# measured by hand on 2026-11-25 (pip download sizes, dpkg's Installed-Size): kept with the table it explains
DECISION = """Install cost: pypmml 1.5.8 is a 14 MB wheel (PMML4S jars inside) + py4j/JPype, and needs a Java
runtime: Debian's `openjdk-17-jre-headless`, 184 MiB installed. sklearn-pmml-model 1.0.8 is a 2 MB
wheel but needs pandas (84 MiB installed), SciPy and scikit-learn (the last two are in the image anyway).

Decision: `processor: "pmml"` evaluates with pypmml. Both evaluators read the same files, so where both
answer the difference from scikit-learn is the evaluator's: pypmml gives the PMML's exact numbers
(2e-16 on gradient boosting; its LogisticRegression and RandomForest gaps come from nyoka's export, which
writes one-vs-rest logits and per-tree votes, and leave every predicted class right), while sklearn-pmml-model
refused nyoka's multi-class LogisticRegression and was off by 0.36 on gradient-boosting probabilities.
PMML exists to carry models between tools, so exactness decides over install size. The price: the JVM
(in the image only where PMML is served), a second or two to load, about 0.5-3 ms per one-row call
(one JVM round trip, the cost that matters for online requests), and large batches are slower than
pure Python (rows cross to the JVM as JSON): up to ~1 ms per row at 1,000 rows."""

SINGLE_CALLS = 300
BATCH_ROWS = 1000


def models() -> list[tuple[str, object, np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_iris, make_classification
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    iris_X, iris_y = load_iris(return_X_y=True)
    X, y = make_classification(n_samples=2000, n_features=8, random_state=0)
    return [
        ("LogisticRegression, iris (3 classes)", LogisticRegression(max_iter=500), iris_X, iris_y),
        ("RandomForest 50 trees, iris", RandomForestClassifier(50, max_depth=6, random_state=0), iris_X, iris_y),
        ("GradientBoosting 50 trees, binary", GradientBoostingClassifier(n_estimators=50, random_state=0), X, y),
    ]


def export(model: object, X: np.ndarray, y: np.ndarray, path: Path) -> list[str]:
    from nyoka import skl_to_pmml
    from sklearn.pipeline import Pipeline

    features = [f"x{i}" for i in range(X.shape[1])]
    pipeline = Pipeline([("model", model)]).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skl_to_pmml(pipeline, features, "label", str(path))
    return features


def timed(fn: Callable[[], object], calls: int) -> float:
    """Median seconds of one call."""
    runs = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def pypmml_scorer(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from airflow_eas.serving.pmml import PmmlProcessor

    proc = PmmlProcessor(path)
    proc.initialize()
    return lambda X: np.asarray(proc.predict(X.tolist())[1])


def pure_scorer(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn_pmml_model.auto_detect import auto_detect_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = auto_detect_estimator(pmml=str(path))

    def score(X: np.ndarray) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        return np.asarray(model.predict_proba(frame))

    return score


def measure(name: str, build: Callable[[], Callable[[np.ndarray], np.ndarray]], X: np.ndarray,
            want: np.ndarray) -> dict:
    t = time.perf_counter()
    try:
        score = build()
        load = time.perf_counter() - t
        got = score(X[:200])
    except Exception as exc:  # noqa: BLE001 - an evaluator that refuses the model is a result, not a crash
        return {"evaluator": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"}
    same_shape = got.shape == want[:200].shape
    diff = float(np.max(np.abs(got - want[:200]))) if same_shape else float("nan")
    agree = float(np.mean(got.argmax(axis=1) == want[:200].argmax(axis=1))) if same_shape else float("nan")
    batch = np.resize(X, (BATCH_ROWS, X.shape[1]))
    return {
        "evaluator": name,
        "load": load,
        "single": timed(lambda: score(X[:1]), SINGLE_CALLS),
        "batch": timed(lambda: score(batch), 5),
        "diff": diff,
        "agree": agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    try:
        import sklearn_pmml_model  # noqa: F401

        pure = True
    except ImportError:
        pure = False
        print("sklearn-pmml-model not installed: its rows are left out (pip install sklearn-pmml-model)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for title, model, X, y in models():
            path = Path(tmp) / "model.pmml"
            export(model, X, y, path)
            X = X.astype(float)
            want = model.predict_proba(X[:200])
            native = measure("scikit-learn (the model itself)", lambda m=model: m.predict_proba, X, want)
            results = [native, measure("pypmml (JVM)", lambda p=path: pypmml_scorer(p), X, want)]
            if pure:
                results.append(measure("sklearn-pmml-model (pure Python)", lambda p=path: pure_scorer(p), X, want))
            rows += [(title, r) for r in results]
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on 2 cores (x86_64, shared with other test runs: timings are noisy), "
        "`python -m bench.pmml_bench`: models trained "
        "here, exported to PMML by nyoka, scored in process. single = median of "
        f"{SINGLE_CALLS} one-row calls; batch = median of 5 calls on {BATCH_ROWS} rows; max |Δp| = the largest "
        "probability difference from scikit-learn over 200 rows, same class = rows whose most likely class "
        "is scikit-learn's; load = file to first answer ready.",
        "",
        "| model | evaluator | load | single row | 1,000 rows | max abs Δp | same class |",
        "|---|---|---|---|---|---|---|",
    ]
    for title, r in rows:
        if "error" in r:
            lines.append(f"| {title} | {r['evaluator']} | refused: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {title} | {r['evaluator']} | {r['load'] * 1000:,.0f} ms | {r['single'] * 1000:.3f} ms "
            f"| {r['batch'] * 1000:.1f} ms | {r['diff']:.1e} | {r['agree']:.1%} |"
        )
    table = "\n".join(lines + ["", DECISION])
    print(table)
    if not args.no_write:
        write_section(SECTION, table)


if __name__ == "__main__":
    main()
