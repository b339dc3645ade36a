"""What the emulator cannot show (it checks no resourceVersion): merge patches that remove, lost lease races."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_eas.errors import Conflict, RolloutAborted
from airflow_eas.platform.kubernetes import lease
from airflow_eas.platform.kubernetes.api import merge_diff
from airflow_eas.platform.kubernetes.config import ClusterSettings
from airflow_eas.platform.kubernetes.manifests import deployment
from airflow_eas.spec import parse_spec


def test_merge_diff_removes_what_the_new_manifest_lacks() -> None:
    spec = {"name": "svc", "containers": [{"image": "a:1"}],
            "cloud": {"computing": {"instances": [{"type": "m6i.large", "spot_price_limit": 1}]}}}
    old = deployment(parse_spec(spec), ClusterSettings(), version=1)
    new = deployment(parse_spec({**spec, "cloud": None}), ClusterSettings(), version=2)
    patch = merge_diff(old, new)
    pod = patch["spec"]["template"]["spec"]
    assert pod["affinity"] is None, "a JSON merge patch deletes with null"
    assert pod["tolerations"] is None, "a JSON merge patch deletes with null"
    assert patch["spec"]["template"]["metadata"]["labels"]["airflow-eas.io/version"] == "2"
    assert merge_diff({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}, "lists are replaced whole"


class RacingApi:
    """A Lease store that, like a real API server, refuses a write carrying a stale resourceVersion."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.version = 0
        self.before_write: list[Any] = []

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None if self.obj is None else {**self.obj, "metadata": {**self.obj["metadata"],
                                                                       "resourceVersion": str(self.version)}}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._race()
        if self.obj is not None:
            raise Conflict("already exists")
        self.obj, self.version = body, self.version + 1
        return body

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._race()
        if patch["metadata"].get("resourceVersion") != str(self.version):
            raise Conflict("the object has been modified")
        assert self.obj is not None
        notes = {**(self.obj["metadata"].get("annotations") or {}), **(patch["metadata"].get("annotations") or {})}
        self.obj = {**self.obj, "metadata": {**self.obj["metadata"],
                                             "annotations": {k: v for k, v in notes.items() if v is not None}},
                    "spec": {**self.obj["spec"], **patch["spec"]}}
        self.version += 1
        return self.obj

    def _race(self) -> None:
        if self.before_write:
            self.before_write.pop(0)()


def test_a_lost_race_is_read_again_not_overwritten() -> None:
    api = RacingApi()
    def someone_else_takes_it() -> None:
        api.obj = {"metadata": {"name": "g"}, "spec": {"holderIdentity": "run-2", "leaseDurationSeconds": 60,
                                                         "renewTime": lease._micro_time(time.time())}}
        api.version += 1

    api.before_write.append(someone_else_takes_it)
    with pytest.raises(Conflict, match="leased by 'run-2'"):
        lease.acquire(api, "ml", "g", "run-1", 60)  # type: ignore[arg-type]
    assert api.obj is not None
    assert api.obj["spec"]["holderIdentity"] == "run-2"


def test_an_expired_lease_taken_by_two_has_one_winner() -> None:
    api = RacingApi()
    api.obj = {"metadata": {"name": "g"}, "spec": {"holderIdentity": "old", "leaseDurationSeconds": 1,
                                                     "renewTime": lease._micro_time(time.time() - 10)}}
    api.before_write.append(lambda: lease.acquire(api, "ml", "g", "run-2", 60))  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="leased by 'run-2'"):
        lease.acquire(api, "ml", "g", "run-1", 60)  # type: ignore[arg-type]


def test_an_expired_leader_lease_taken_by_two_guards_has_one_leader() -> None:
    api = RacingApi()
    api.obj = {"metadata": {"name": "airflow-eas-guard"},
               "spec": {"holderIdentity": "guard-0", "leaseDurationSeconds": 5,
                        "renewTime": lease._micro_time(time.time() - 10)}}
    won: list[bool] = []
    api.before_write.append(lambda: won.append(lease.lead(api, "ml", "airflow-eas-guard", "guard-2", 5)))  # type: ignore[arg-type]
    assert lease.lead(api, "ml", "airflow-eas-guard", "guard-1", 5) is False  # type: ignore[arg-type]
    assert won == [True]
    assert api.obj["spec"]["holderIdentity"] == "guard-2"
    assert lease.lead(api, "ml", "airflow-eas-guard", "guard-1", 5) is False, "it leads until it lapses"  # type: ignore[arg-type]


def test_a_heartbeat_racing_the_revocation_still_loses_the_group() -> None:
    api = RacingApi()
    lease.acquire(api, "ml", "g", "run-1", 1, stable="g_blue")  # type: ignore[arg-type]
    seen = lease.get(api, "ml", "g")  # type: ignore[arg-type]
    assert seen is not None
    # The guard already moved the traffic; the run's late heartbeat lands before the mark is written.
    api.before_write.append(lambda: lease.renew(api, "ml", "g", "run-1", 60))  # type: ignore[arg-type]
    lease.mark(api, "ml", seen, "revoked", "the lease of run-1 lapsed")  # type: ignore[arg-type]
    with pytest.raises(RolloutAborted, match="the lease of run-1 lapsed"):
        lease.renew(api, "ml", "g", "run-1", 60)  # type: ignore[arg-type]
