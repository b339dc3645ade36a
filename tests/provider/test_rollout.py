"""airflow_eas.rollout against the in-memory platform: no Airflow, no processes."""

from __future__ import annotations

import json

import pytest

from airflow_eas import rollout
from airflow_eas.errors import Conflict, EasError, InvalidSpec, NotFound
from airflow_eas.platform.base import STOPPED, GroupInfo, GroupMember
from tests.fakes import FakePlatform

TEMPLATE = {"processor": "sklearn", "model_path": "file:///m/v2/model.joblib", "metadata": {"instance": 2}}


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


def group(*members: tuple[str, int]) -> GroupInfo:
    return GroupInfo("g", "", "", [GroupMember(name, weight) for name, weight in members])


# -- members -----------------------------------------------------------------------------------


def test_member_names_check_the_group_name() -> None:
    assert rollout.member_names("fraud") == ("fraud_blue", "fraud_green")
    with pytest.raises(InvalidSpec):
        rollout.member_names("Bad Name")


@pytest.mark.parametrize(
    ("members", "idle"),
    [
        ((), "g_blue"),  # empty group: blue
        ((("g_blue", 0),), "g_blue"),  # a retried first deploy picks the same member
        ((("g_blue", 100), ("g_green", 0)), "g_green"),
        ((("g_blue", 0), ("g_green", 100)), "g_blue"),
    ],
)
def test_idle_member_is_the_one_without_traffic(members: tuple[tuple[str, int], ...], idle: str) -> None:
    assert rollout.pick_idle_member("g", group(*members)) == idle


def test_both_members_live_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="both g_blue"):
        rollout.pick_idle_member("g", group(("g_blue", 50), ("g_green", 50)))


def test_live_members_heaviest_first() -> None:
    info = group(("g_blue", 30), ("g_green", 70), ("g_red", 0))
    assert [m.service for m in rollout.live_members(info)] == ["g_green", "g_blue"]
    assert [m.service for m in rollout.live_members(info, exclude="g_green")] == ["g_blue"]


# -- deploy ------------------------------------------------------------------------------------


def test_plan_deploy_on_an_empty_group(platform: FakePlatform) -> None:
    target = rollout.plan_deploy(platform, group="g", service=None)
    assert target == rollout.DeployTarget("g_blue", "g", None)


def test_plan_deploy_next_to_a_live_member(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", weight=100)
    assert rollout.plan_deploy(platform, group="g", service=None) == rollout.DeployTarget("g_green", "g", "g_blue")


def test_plan_deploy_never_redeploys_a_live_member(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", weight=100)
    with pytest.raises(Conflict, match="serves 100%"):
        rollout.plan_deploy(platform, group="g", service="g_blue")


def test_plan_deploy_needs_a_group_or_a_name(platform: FakePlatform) -> None:
    with pytest.raises(InvalidSpec, match="give group"):
        rollout.plan_deploy(platform, group=None, service=None)
    assert rollout.plan_deploy(platform, group=None, service="solo") == rollout.DeployTarget("solo")


def test_member_spec_sets_name_group_and_model_path() -> None:
    target = rollout.DeployTarget("g_green", "g")
    spec = rollout.member_spec(json.dumps(TEMPLATE), target, model_path="file:///m/v3/model.joblib")
    assert (spec.name, spec.group, spec.model_path) == ("g_green", "g", "file:///m/v3/model.joblib")
    assert rollout.member_spec(TEMPLATE, target).model_path == TEMPLATE["model_path"]
    assert "name" not in TEMPLATE  # the template is not changed


def test_deploy_creates_then_updates(platform: FakePlatform) -> None:
    spec = rollout.member_spec(TEMPLATE, rollout.DeployTarget("g_blue", "g"))
    first = platform.deploy(spec)
    second = platform.deploy(spec)
    assert platform.writes("create", "modify") == [("create", "g_blue"), ("modify", "g_blue")]
    assert (first.version, second.version) == (1, 2)
    assert len(platform.list()) == 1


def test_deploy_restarts_a_scaled_down_member(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", instances=0, status=STOPPED)
    info = platform.deploy(rollout.member_spec(TEMPLATE, rollout.DeployTarget("g_blue", "g")))
    assert platform.writes("modify", "start") == [("modify", "g_blue"), ("start", "g_blue")]
    assert info.ready
    assert info.instances == 2


# -- traffic -----------------------------------------------------------------------------------


def test_shift_weights_takes_the_remainder_from_the_live_members() -> None:
    live_blue = group(("g_blue", 100), ("g_green", 0))
    assert rollout.shift_weights(live_blue, "g_green", 10) == {"g_green": 10, "g_blue": 90}
    split = group(("a", 60), ("b", 30), ("g_green", 10))
    assert rollout.shift_weights(split, "g_green", 40) == {"g_green": 40, "a": 40, "b": 20}


def test_shift_weights_with_previous_gives_it_all_the_rest() -> None:
    info = group(("g_blue", 0), ("g_green", 0), ("g_red", 100))
    assert rollout.shift_weights(info, "g_green", 30, previous="g_blue") == {"g_green": 30, "g_blue": 70, "g_red": 0}


def test_shift_weights_first_member_gets_all_and_bad_weights_fail() -> None:
    assert rollout.shift_weights(group(), "g_blue", 10) == {"g_blue": 100}
    with pytest.raises(InvalidSpec, match="between 0 and 100"):
        rollout.shift_weights(group(), "g_blue", 101)


# -- promote -----------------------------------------------------------------------------------


def test_promote_moves_all_traffic_and_names_the_old_members(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", weight=50)
    platform.add_member("g_green", "g", weight=50)
    assert rollout.promote(platform, "g", "g_green") == ["g_blue"]
    assert platform.describe_group("g").weight_of("g_green") == 100
    with pytest.raises(NotFound, match="not a member"):
        rollout.promote(platform, "g", "g_red")


@pytest.mark.parametrize(
    ("mode", "write", "instances"),
    [("stop", ("stop", "g_blue"), 0), ("zero", ("scale", "g_blue", 0), 0), ("keep", None, 1)],
)
def test_scale_down_old_members(platform: FakePlatform, mode: str, write: tuple | None, instances: int) -> None:
    platform.add_member("g_blue", "g", weight=0)
    platform.add_member("g_green", "g", weight=100)
    result = rollout.scale_down_old_members(platform, "g", "g_green", mode)
    assert result.scaled_down == ([] if write is None else ["g_blue"])
    assert platform.writes("stop", "scale") == ([] if write is None else [write])
    assert platform.describe("g_blue").instances == instances


def test_scale_down_leaves_everything_up_after_a_rollback(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", weight=100)
    platform.add_member("g_green", "g", weight=0)
    result = rollout.scale_down_old_members(platform, "g", "g_green", "stop")
    assert result.scaled_down == []
    assert "no longer routes everything" in result.skipped_because
    assert platform.writes("stop", "scale") == []


def test_scale_down_skips_members_already_down_or_gone(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", instances=0, status=STOPPED)
    platform.add_member("g_green", "g", weight=100)
    assert rollout.scale_down_old_members(platform, "g", "g_green", "stop").scaled_down == []
    with pytest.raises(InvalidSpec, match="choose stop"):
        rollout.check_scale_down("pause")


# -- rollback ----------------------------------------------------------------------------------


def test_rollback_starts_a_stopped_previous_before_it_takes_traffic(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", instances=0, status=STOPPED)
    platform.add_member("g_green", "g", weight=100)
    restarted: list[tuple[str, str]] = []
    weights = rollout.rollback(
        platform, "g", "g_green", "g_blue", on_restart=lambda name, status: restarted.append((name, status))
    )
    assert weights == {"g_green": 0, "g_blue": 100}
    assert restarted == [("g_blue", STOPPED)]
    assert [c[0] for c in platform.writes("start", "set_traffic", "stop")] == ["start", "set_traffic", "stop"]
    assert platform.describe("g_green").status == STOPPED


def test_rollback_without_previous_only_takes_the_traffic(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", weight=100)
    assert rollout.rollback(platform, "g", "g_blue", None, stop_service=False) == {"g_blue": 0}
    assert platform.writes("start", "stop") == []


def test_rollback_gives_up_when_previous_never_gets_ready(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g", instances=0, status=STOPPED, ready=False)
    platform.add_member("g_green", "g", weight=100)
    with pytest.raises(EasError, match="did not come back") as caught:
        rollout.rollback(platform, "g", "g_green", "g_blue", ready_timeout=0.2)
    assert caught.value.retryable
    assert platform.describe_group("g").weight_of("g_green") == 100  # still serving


# -- warm-up -----------------------------------------------------------------------------------


def test_read_warmup_file_jsonl_json_and_errors(tmp_path) -> None:
    jsonl = tmp_path / "w.jsonl"
    jsonl.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert rollout.read_warmup_file(f"file://{jsonl}") == [b'{"a": 1}', b'{"a": 2}']
    listed = tmp_path / "w.json"
    listed.write_text('[{"a": 1}, "raw"]')
    assert rollout.read_warmup_file(str(listed)) == [b'{"a": 1}', b"raw"]
    listed.write_text('{"a": 1}')
    with pytest.raises(InvalidSpec, match="JSON list"):
        rollout.read_warmup_file(str(listed))
    with pytest.raises(InvalidSpec, match="cannot read"):
        rollout.read_warmup_file(str(tmp_path / "missing.jsonl"))
    with pytest.raises(InvalidSpec, match="give a local path, a file:// URI or an oss:// object"):
        rollout.read_warmup_file("s3://bucket/w.jsonl")


def test_read_warmup_file_from_oss(s3_server, monkeypatch, tmp_path) -> None:
    """An oss:// warm-up file is read with the platform's own object-store client (a real S3 server)."""
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client(
        "s3", endpoint_url=s3_server["EAS_OSS_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=s3_server["EAS_OSS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_server["EAS_OSS_ACCESS_KEY_SECRET"],
    )  # fmt: skip
    s3.create_bucket(Bucket="warmup")
    s3.put_object(Bucket="warmup", Key="fraud/w.jsonl", Body=b'{"instances": [[1, 2]]}\n{"instances": [[3, 4]]}\n')
    with pytest.raises(InvalidSpec, match="EAS_OSS_ENDPOINT"):
        rollout.read_warmup_file("oss://warmup/fraud/w.jsonl", cache=tmp_path)
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    bodies = rollout.read_warmup_file("oss://warmup/fraud/w.jsonl", cache=tmp_path)
    assert bodies == [b'{"instances": [[1, 2]]}', b'{"instances": [[3, 4]]}']


def test_warm_up_counts_requests_and_failures(platform: FakePlatform) -> None:
    platform.add_member("g_blue", "g")
    platform.answers["g_blue"] = lambda body: (500, b"boom") if body == b"bad" else (200, b"ok")
    bodies = rollout.warmup_bodies(platform, "g_blue", data=[{"x": 1}, "bad"], data_path=None)
    result = rollout.warm_up(platform, "g_blue", bodies, count=2, timeout=1)
    summary = result.to_dict()
    assert (summary["requests"], summary["errors"]) == (4, 2)
    assert result.failures[0] == "HTTP 500: boom"
    assert [b for _, b in platform.invoked] == [b'{"x": 1}', b"bad"] * 2


def test_warm_up_data_may_be_an_asset_of_the_platform(platform: FakePlatform, tmp_path) -> None:
    warm = tmp_path / "w.jsonl"
    warm.write_text('{"a": 1}\n{"a": 2}\n')
    platform.assets["warm"] = {"name": "warm", "type": "data", "uri": f"file://{warm}"}
    platform.assets["img"] = {"name": "img", "type": "image", "uri": "repo/app:1"}
    platform.assets["secret"] = {"name": "secret", "type": "data", "uri": "https://***@example.com/w.jsonl"}
    platform.add_member("g_blue", "g")
    platform.services["g_blue"].spec = platform.services["g_blue"].spec.model_copy(
        update={"warm_up_data_path": "asset:warm"})
    # the spec's warm_up_data_path, and a data_path given to the operator
    assert rollout.warmup_bodies(platform, "g_blue", data=None, data_path=None) == [b'{"a": 1}', b'{"a": 2}']
    assert rollout.warmup_bodies(platform, "g_blue", data=None, data_path="asset:warm") == [b'{"a": 1}', b'{"a": 2}']
    with pytest.raises(EasError, match="asset 'gone' is not registered"):
        rollout.warmup_bodies(platform, "g_blue", data=None, data_path="asset:gone")
    with pytest.raises(EasError, match="asset 'img' is of type image, not data"):
        rollout.warmup_bodies(platform, "g_blue", data=None, data_path="asset:img")
    with pytest.raises(InvalidSpec, match="the asset's URI carries credentials"):
        rollout.warmup_bodies(platform, "g_blue", data=None, data_path="asset:secret")


# -- leases ------------------------------------------------------------------------------------


def test_lease_conflict_fails_after_the_wait(platform: FakePlatform) -> None:
    platform.acquire_lease("g", "other", 60)
    waits: list[Conflict] = []
    with pytest.raises(Conflict, match="being changed by another rollout"):
        rollout.acquire_lease(
            platform, "g", "me", ttl_seconds=60, wait_seconds=0.1, poll_interval=0.05, on_wait=waits.append
        )
    assert len(waits) >= 1
    assert rollout.release_lease(platform, "g", "me") is not None  # someone else's: left alone
    assert platform.leases["g"].holder == "other"


def test_lease_is_taken_once_the_other_holder_releases(platform: FakePlatform) -> None:
    platform.acquire_lease("g", "other", 60)

    def release(_: Conflict) -> None:
        platform.release_lease("g", "other")

    lease = rollout.acquire_lease(
        platform, "g", "me", ttl_seconds=60, wait_seconds=5, poll_interval=0.01, on_wait=release
    )
    assert lease.holder == "me"
    assert rollout.release_lease(platform, "g", "me") is None
    assert "g" not in platform.leases
