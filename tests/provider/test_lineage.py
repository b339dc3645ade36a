"""airflow_eas.lineage: OpenLineage facets with the real provider, and the events a real run emits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_eas import lineage

pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider is not installed")


def test_without_the_provider_no_facets(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, as where the provider is not installed.
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    assert lineage.deploy_lineage({"service": "g_green", "model_path": "oss://b/m.joblib"}) is None
    assert lineage.release_lineage("g", {"model_path": "oss://b/m.joblib"}) is None


def test_deploy_and_promote_facets_are_the_providers_classes() -> None:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    deployed = lineage.deploy_lineage({"service": "g_green", "model_path": "oss://models/fraud/v2/model.joblib"})
    assert isinstance(deployed, OperatorLineage)
    assert deployed.inputs == [Dataset(namespace="oss://models", name="/fraud/v2/model.joblib")]
    assert deployed.outputs == [Dataset(namespace="eas", name="services/g_green")]
    released = lineage.release_lineage("g", {"model_path": "file:///models/m.joblib"})
    assert released.inputs == [Dataset(namespace="file", name="/models/m.joblib")]
    assert released.outputs == [Dataset(namespace="eas", name="groups/g")]
    assert lineage.release_lineage("g", {}) is None  # nothing released (e.g. the task failed)


@pytest.mark.airflow
def test_a_release_run_emits_our_datasets_to_openlineage(
    eas_conn, eas_server, airflow_db, sklearn_model, tmp_path: Path
) -> None:
    """``airflow dags test`` (dag.test) with OpenLineage's file transport: deploy and promote report the model
    path in and the service / group out. In a subprocess: OpenLineage's listener is registered when the
    plugins load, once per process, and only with a transport configured."""
    from airflow_eas.plan import write_dag_file
    from tests.plans import rollout_plan
    from tests.provider.conftest import DAGS_FOLDER

    group, dag_id = "lineage", "lineage_release"
    model = sklearn_model.resolve()
    plan = rollout_plan(dag_id, group, params={"version": "1"})
    plan["service"]["model_path"] = str(model)
    write_dag_file(DAGS_FOLDER, plan)
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file),
                                                       "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "airflow_eas_tests",
    }  # fmt: skip
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run([str(airflow), "dags", "test", dag_id], env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = {e["job"]["name"].rpartition(".")[2]: e for e in events if e["eventType"] == "COMPLETE"}
    assert {"deploy", "promote"} <= complete.keys(), sorted(complete)

    def datasets(event: dict, side: str) -> list[tuple[str, str]]:
        return [(d["namespace"], d["name"]) for d in event[side]]

    assert datasets(complete["deploy"], "inputs") == [("file", str(model))]
    assert datasets(complete["deploy"], "outputs") == [("eas", f"services/{group}_blue")]
    assert datasets(complete["promote"], "inputs") == [("file", str(model))]
    assert datasets(complete["promote"], "outputs") == [("eas", f"groups/{group}")]
