"""airflow_eas.lineage: the release asset's extra and OpenLineage facets (the provider is optional)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from airflow_eas import lineage


@dataclass
class _Dataset:
    namespace: str
    name: str


@dataclass
class _OperatorLineage:
    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)


@pytest.fixture
def openlineage_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two names lineage.py imports, as the OpenLineage provider and its compat layer give them
    (the provider is not installed here: it would switch on lineage for every test in the shared venv)."""
    extractors = ModuleType("airflow.providers.openlineage.extractors")
    extractors.OperatorLineage = _OperatorLineage  # type: ignore[attr-defined]
    facet = ModuleType("airflow.providers.common.compat.openlineage.facet")
    facet.Dataset = _Dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", ModuleType("airflow.providers.openlineage"))
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", extractors)
    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.openlineage.facet", facet)


def test_without_the_provider_no_facets() -> None:
    assert lineage.deploy_lineage({"service": "g_green", "model_path": "oss://b/m.joblib"}) is None
    assert lineage.release_lineage("g", {"model_path": "oss://b/m.joblib"}) is None


def test_deploy_and_promote_facets(openlineage_installed: None) -> None:
    deployed = lineage.deploy_lineage({"service": "g_green", "model_path": "oss://models/fraud/v2/model.joblib"})
    assert deployed.inputs == [_Dataset("oss://models", "/fraud/v2/model.joblib")]
    assert deployed.outputs == [_Dataset("eas", "services/g_green")]
    released = lineage.release_lineage("g", {"model_path": "file:///models/m.joblib"})
    assert released.inputs == [_Dataset("file", "/models/m.joblib")]
    assert released.outputs == [_Dataset("eas", "groups/g")]
    assert lineage.release_lineage("g", {}) is None  # nothing released (e.g. the task failed)
