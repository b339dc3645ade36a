"""A service's status as the API reports it, from its row and its instances."""

from __future__ import annotations

import time

import pytest

from airflow_eas.platform import base as api
from airflow_eas.server.store import DELETED, DRAINING, RUNNING, STARTING, InstanceRow, ServiceRow
from airflow_eas.server.views import service_status


def _svc(**fields: object) -> ServiceRow:
    row = ServiceRow("s", {}, 2, 1, "t", None, None, "", False, 0.0, 0.0)
    for key, value in fields.items():
        setattr(row, key, value)
    return row


def _inst(state: str, version: int = 2) -> InstanceRow:
    return InstanceRow("s-1", "s", version, 1, "h", state, True, 0, time.time(), None, time.time())


@pytest.mark.parametrize(("svc", "insts", "status"), [
    (_svc(desired=DELETED), [_inst(RUNNING)], api.DELETING),
    (_svc(failed_version=2), [_inst(RUNNING, 1)], api.FAILED),
    (_svc(desired=0), [], api.STOPPED),
    (_svc(desired=0), [_inst(DRAINING)], api.STOPPING),
    (_svc(), [_inst(RUNNING, 1), _inst(STARTING)], api.UPDATING),
    (_svc(), [_inst(STARTING)], api.CREATING),
    (_svc(ever_ready=True), [_inst(STARTING)], api.WAITING),
    (_svc(desired=2), [_inst(RUNNING)], api.SCALING),
    (_svc(), [_inst(RUNNING), _inst(DRAINING)], api.SCALING),
    (_svc(), [_inst(RUNNING)], api.RUNNING),
])
def test_service_status(svc: ServiceRow, insts: list[InstanceRow], status: str) -> None:
    assert service_status(svc, insts) == status
