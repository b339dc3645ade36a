"""The single host has no instance types: ``cloud`` is validated, and describe says it is ignored."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airflow_eas.errors import InvalidSpec
from airflow_eas.spec import parse_spec

ECHO_APP = Path(__file__).resolve().parents[1] / "apps" / "echo_app.py"


def test_instance_types_are_refused_when_misspelled_and_said_to_be_ignored(eas_server) -> None:
    spec = {
        "name": "cloud_echo",
        "containers": [{"image": "local", "command": f"{sys.executable} {ECHO_APP}", "port": 8000}],
        "metadata": {"instance": 1},
        "cloud": {"computing": {"instances": [{"type": "ecs.c6.large"}, {"type": "ecs.c7.large",
                                                                       "spot_price_limit": 0.2}]}},
    }
    with pytest.raises(InvalidSpec, match=r"cloud.computing.instances.1.spot_price: unknown field"):
        parse_spec({**spec, "cloud": {"computing": {"instances": [{"type": "a"}, {"type": "b", "spot_price": 1}]}}})
    info = eas_server.client.create(parse_spec(spec))
    try:
        warnings = [e.message for e in eas_server.client.describe("cloud_echo").events if e.level == "warning"]
        assert any("cloud.computing.instances (ecs.c6.large, ecs.c7.large) ignored" in w for w in warnings), warnings
        assert info.spec["cloud"]["computing"]["instances"][1]["spot_price_limit"] == 0.2, "kept in the spec"
    finally:
        eas_server.client.delete("cloud_echo")
