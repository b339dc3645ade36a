"""EAS's own Python SDK (PyPI `eas-prediction`) works against our gateway unchanged.

The SDK signs each request (``Authorization: EAS <HMAC-SHA1>``); the gateway verifies the
signature itself. The SDK pins protobuf 3, which Airflow cannot live with, so it gets its
own folder and runs in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_until

SDK_DIR = Path(__file__).resolve().parents[2] / ".venv" / "eas-sdk"

CLIENT = """
import sys
from eas_prediction import PredictClient, StringRequest
from eas_prediction.exception import PredictException
endpoint, name, token, body = sys.argv[1:5]
if body.startswith("@"):  # a body too large for a command line
    body = open(body[1:]).read()
client = PredictClient(endpoint, name)
client.set_token(token)
client.set_retry_count(1)
client.init()
try:
    print(client.predict(StringRequest(body)).response_data.decode())
except PredictException as exc:
    print(f"HTTP {exc.code}")
"""


@pytest.fixture(scope="module")
def sdk() -> Path:
    if not (SDK_DIR / "eas_prediction").exists():
        res = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(SDK_DIR), "eas-prediction"],
            capture_output=True, text=True, timeout=300,
        )
        if res.returncode != 0:
            pytest.skip(f"cannot install eas-prediction from PyPI: {res.stderr.strip()[-300:]}")
    return SDK_DIR


def _call(sdk: Path, endpoint: str, name: str, token: str, body: str) -> str:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(sdk), "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    res = subprocess.run([sys.executable, "-s", "-c", CLIENT, endpoint, name, token, body], capture_output=True,
                         text=True, env=env, timeout=60)
    if res.returncode != 0:
        raise AssertionError(res.stderr[-1000:])
    return res.stdout.strip().splitlines()[-1]


def test_eas_sdk_signed_requests_pass_the_gateway(eas_server, sdk: Path) -> None:
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("sdk_svc", group="sdk_grp")))
    wait_until(lambda: client.describe("sdk_svc").status == "Running", 30, "Running")
    answer = json.loads(_call(sdk, eas_server.gateway, "sdk_svc", info.token, '{"rows": [1]}'))
    assert answer["echo"] == '{"rows": [1]}'

    group = client.set_traffic("sdk_grp", {"sdk_svc": 100})
    assert json.loads(_call(sdk, eas_server.gateway, "sdk_grp", group.token, "g"))["echo"] == "g"

    assert _call(sdk, eas_server.gateway, "sdk_svc", "wrong-token-123", "x") == "HTTP 401"
    assert _call(sdk, eas_server.gateway, "sdk_svc", group.token, "x") == "HTTP 401", "another name's token"


def test_eas_sdk_signed_large_bodies_pass_the_gateway(eas_server, sdk: Path, tmp_path: Path) -> None:
    """Issue 12 #6: correctly signed bodies of about 15 KB or more were refused with 401."""
    client = eas_server.client
    info = client.create(parse_spec(echo_spec("sdk_big")))
    wait_until(lambda: client.describe("sdk_big").status == "Running", 30, "Running")
    for size in (20_000, 3_000_000):  # past HAProxy's buffer: the signature covers the Content-MD5 header
        (tmp_path / "body").write_text("r" * size)
        answer = json.loads(_call(sdk, eas_server.gateway, "sdk_big", info.token, f"@{tmp_path / 'body'}"))
        assert len(answer["echo"]) == size
