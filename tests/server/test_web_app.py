"""A web app deployed by image is served through the gateway; its link opens it in a browser."""

from __future__ import annotations

import sys

import requests

from airflow_eas.spec import parse_spec
from tests.conftest import APPS, wait_until


def test_web_app_link_works_in_a_browser(eas_server) -> None:
    client = eas_server.client
    spec = {"name": "playground", "metadata": {"instance": 1},
            "containers": [{"image": "local", "command": f"{sys.executable} {APPS / 'web_app.py'}", "port": 8000}]}
    client.create(parse_spec(spec))
    info = wait_until(lambda: (i := client.describe("playground")).status == "Running" and i, 60, "Running")
    assert info.link == f"{info.endpoint}/?token={info.token}"

    browser = requests.Session()
    page = browser.get(info.link, timeout=10)
    assert page.status_code == 200
    assert "fraud model playground" in page.text
    assert browser.cookies.get("eas_token") == info.token, "the link leaves a cookie scoped to the app"
    answer = browser.post(f"{info.endpoint}/predict", json={"features": [1, 2, 3]}, timeout=10)
    assert answer.status_code == 200, "later calls ride on the cookie"
    assert answer.json() == {"score": 6}, "later calls ride on the cookie"

    assert requests.get(f"{info.endpoint}/", timeout=10).status_code == 401, "no token, no page"
    assert requests.get(f"{info.endpoint}/?token=wrong", timeout=10).status_code == 401
