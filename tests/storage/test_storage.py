"""Storage mounts: oss against a real S3-compatible server (moto), git against real repositories,
local and nfs rules, and an oss:// model deployed through a real `eas server`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from airflow_eas.errors import DeployFailed
from airflow_eas.server.embedded import start_embedded
from airflow_eas.server.storage import SYNTHETIC_ROOT, ObjectStore, OssConfig, Storage, clone, scrub
from airflow_eas.spec import GitMount, parse_spec
from tests.conftest import wait_until


def _oss(env: dict[str, str]) -> OssConfig:
    return OssConfig.from_env(env)


@pytest.fixture(scope="module")
def bucket(s3_server):
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client(
        "s3", endpoint_url=s3_server["EAS_OSS_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=s3_server["EAS_OSS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_server["EAS_OSS_ACCESS_KEY_SECRET"],
    )
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="fraud/v1/model.txt", Body=b"model v1")
    s3.put_object(Bucket="models", Key="fraud/v1/sub/extra.txt", Body=b"extra")
    s3.put_object(Bucket="models", Key="fraud/v1/", Body=b"")  # a folder marker, as consoles make them
    return s3


def test_oss_folder_download_is_cached_by_listing(s3_server, bucket, tmp_path: Path) -> None:
    store = ObjectStore(s3_server["EAS_OSS_ENDPOINT"], _oss(s3_server))
    got = store.fetch("oss://models/fraud/v1/", tmp_path, "storage /models", folder=True)
    assert (got / "model.txt").read_bytes() == b"model v1"
    assert (got / "sub" / "extra.txt").read_bytes() == b"extra"
    inode = (got / "model.txt").stat().st_ino
    again = store.fetch("oss://models/fraud/v1", tmp_path, "storage /models", folder=True)
    assert again == got, "unchanged objects are not fetched again"
    assert (again / "model.txt").stat().st_ino == inode, "unchanged objects are not fetched again"
    bucket.put_object(Bucket="models", Key="fraud/v1/sub/new.txt", Body=b"new")
    changed = store.fetch("oss://models/fraud/v1/", tmp_path, "storage /models", folder=True)
    assert changed != got
    assert (changed / "sub" / "new.txt").read_bytes() == b"new"
    single = store.fetch("oss://models/fraud/v1/sub/extra.txt", tmp_path, "model_path", folder=False)
    assert single.name == "extra.txt"
    assert single.read_bytes() == b"extra"


def test_oss_errors_are_clear_and_hold_no_secret(s3_server, bucket, tmp_path: Path) -> None:
    config = _oss(s3_server)
    store = ObjectStore(s3_server["EAS_OSS_ENDPOINT"], config)
    cases = [
        ("oss://models/nothing/here/", "no objects at oss://models/nothing/here/"),
        ("oss://no-such-bucket/x/", "NoSuchBucket"),
    ]
    for uri, expected in cases:
        with pytest.raises(DeployFailed, match=expected) as err:
            store.fetch(uri, tmp_path, "storage /m", folder=True)
        assert config.access_key_secret not in err.value.message
    with pytest.raises(DeployFailed, match="cannot reach the object store http://127.0.0.1:1"):
        ObjectStore("http://127.0.0.1:1", config).fetch("oss://models/x/", tmp_path, "storage /m", folder=True)
    spec = parse_spec({"name": "noendpoint", "processor": "sklearn", "model_path": "oss://models/m.joblib"})
    with pytest.raises(DeployFailed, match="EAS_OSS_ENDPOINT"):
        Storage(tmp_path, OssConfig()).prepare("noendpoint", 1, spec, "process")


def test_prepare_maps_every_kind_and_rewrites_oss_locations(s3_server, bucket, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    spec = parse_spec({
        "name": "mounts", "processor": "sklearn", "model_path": "oss://models/fraud/v1/model.txt",
        "storage": [
            {"mount_path": "/data", "local": {"path": str(local), "readOnly": True}},
            {"mount_path": "/nfs", "nfs": {"server": "127.0.0.1", "path": str(local)}},
            {"mount_path": "/models", "oss": {"path": "oss://models/fraud/v1/"}},
        ],
    })
    storage = Storage(tmp_path / "cache", _oss(s3_server))
    prepared = storage.prepare("mounts", 1, spec, "process")
    mounts = prepared.eas_mounts
    assert mounts["/data"] == str(local)
    assert mounts["/nfs"] == str(local)
    assert Path(mounts["/models"], "model.txt").read_bytes() == b"model v1"
    assert prepared.spec["model_path"] == f"{SYNTHETIC_ROOT}/model_path/model.txt"
    assert Path(mounts[f"{SYNTHETIC_ROOT}/model_path"], "model.txt").read_bytes() == b"model v1"
    again = storage.prepare("mounts", 1, spec.model_copy(update={"metadata": spec.metadata.model_copy(
        update={"instance": 3})}), "process")
    assert again.mounts == prepared.mounts, "a version is prepared once"
    assert again.spec["metadata"]["instance"] == 3, "a version is prepared once"
    assert next(m for m in prepared.mounts if m.mount_path == "/models").read_only


def test_nfs_rules_per_runtime(tmp_path: Path) -> None:
    remote = parse_spec({"name": "nfs", "processor": "sklearn", "model_path": "/m",
                         "storage": [{"mount_path": "/data", "nfs": {"server": "10.0.0.1", "path": "/export"}}]})
    storage = Storage(tmp_path)
    with pytest.raises(DeployFailed, match="nfs server 10.0.0.1 cannot be mounted by the process runtime"):
        storage.prepare("nfs", 1, remote, "process")
    mount = storage.prepare("nfs", 1, remote, "docker").mounts[0]
    assert mount.nfs == ("10.0.0.1", "/export")
    missing = parse_spec({"name": "nfs", "processor": "sklearn", "model_path": "/m",
                          "storage": [{"mount_path": "/data", "local": {"path": "/no/such/dir"}}]})
    with pytest.raises(DeployFailed, match="storage /data: host path /no/such/dir does not exist"):
        storage.prepare("nfs", 2, missing, "process")


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    work = tmp_path_factory.mktemp("repo")
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "app.txt").write_text("v1")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "one", cwd=work)
    first = _git("rev-parse", "HEAD", cwd=work)
    (work / "app.txt").write_text("v2")
    _git("commit", "-q", "-am", "two", cwd=work)
    _git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "app.txt").write_text("feature")
    _git("commit", "-q", "-am", "three", cwd=work)
    _git("checkout", "-q", "main", cwd=work)
    return f"file://{work}", first, str(work)


def test_git_clone_branch_commit_and_cache(repo, tmp_path: Path) -> None:
    url, first, _ = repo
    head = clone(GitMount(repo=url), tmp_path, "storage /code")
    assert (head / "app.txt").read_text() == "v2"
    assert clone(GitMount(repo=url, branch="main"), tmp_path, "storage /code") == head, "one checkout per commit"
    assert (clone(GitMount(repo=url, branch="feature"), tmp_path, "s").joinpath("app.txt").read_text() == "feature")
    pinned = clone(GitMount(repo=url, commit=first), tmp_path, "storage /code")
    assert (pinned / "app.txt").read_text() == "v1"
    with pytest.raises(DeployFailed, match="branch 'nope' not found"):
        clone(GitMount(repo=url, branch="nope"), tmp_path, "storage /code")


def test_git_credentials_never_show(repo, tmp_path: Path) -> None:
    url, _, _ = repo
    with_creds = GitMount(repo=url, username="robot", password="p4ss-w0rd-XYZ")
    checkout = clone(with_creds, tmp_path, "storage /code")  # file:// ignores the header; the clone works
    assert "p4ss" not in (checkout / ".git" / "config").read_text()
    bad = GitMount(repo="https://robot:inline-s3cret@127.0.0.1:1/repo.git", username="robot",
                   password="p4ss-w0rd-XYZ")
    with pytest.raises(DeployFailed) as err:
        clone(bad, tmp_path, "storage /code")
    message = err.value.message
    assert "git ls-remote of https://***@127.0.0.1:1/repo.git failed" in message
    for secret in ("inline-s3cret", "p4ss-w0rd-XYZ", "cm9ib3Q6cDRzcy13MHJkLVhZWg"):
        assert secret not in message
    assert scrub("see https://u:pw@host/x and pw", ["pw"]) == "see https://***@host/x and ***"


def test_oss_model_deploys_through_eas_server(s3_server, bucket, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    joblib.dump(model, tmp_path / "model.joblib")
    bucket.upload_file(str(tmp_path / "model.joblib"), "models", "fraud/v2/model.joblib")
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    server = start_embedded(tmp_path / "eas")
    try:
        client = server.client
        client.create(parse_spec({"name": "oss_model", "processor": "sklearn",
                                  "model_path": "oss://models/fraud/v2/model.joblib"}))
        client.create(parse_spec({"name": "oss_missing", "processor": "sklearn",
                                  "model_path": "oss://models/fraud/v9/model.joblib"}))
        info = wait_until(lambda: (i := client.describe("oss_model")).status == "Running"
                          and i.running_instances == 1 and i, 60, "oss model to run")
        resp = requests.post(info.endpoint, json={"instances": [[0.0], [3.0]]},
                             headers={"Authorization": info.token}, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"] == [0, 1], resp.text
        failed = wait_until(lambda: (i := client.describe("oss_missing")).status == "Failed" and i, 60, "Failed")
        assert "no objects at oss://models/fraud/v9/model.joblib" in failed.reason
        log = (tmp_path / "eas" / "server.log").read_text()
        assert s3_server["EAS_OSS_ACCESS_KEY_SECRET"] not in log + failed.reason
    finally:
        server.stop()
