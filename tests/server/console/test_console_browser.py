"""The console in a real browser (headless Chromium) against a real `eas server`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import requests

from tests.conftest import APPS, echo_spec, wait_running, wait_until
from tests.server.console.conftest import sign_in

POLL_TIMEOUT = 60_000  # ms: a deploy on a busy machine


def test_sign_in_with_a_wrong_token_is_refused_and_shows_no_service(browser, eas_server) -> None:
    eas_server.client._call("POST", "/api/v2/services", json=echo_spec("con_secret_svc", instances=0))
    context = browser.new_context()
    tab = context.new_page()
    try:
        tab.goto(f"{eas_server.endpoint}/console/services/con_secret_svc")
        assert "/console/login" in tab.url  # no session: every page sends to sign-in
        sign_in(tab, eas_server, token="not-the-token")
        assert "Wrong admin token" in tab.inner_text("[role=alert]")
        assert "con_secret_svc" not in tab.content()
        tab.goto(f"{eas_server.endpoint}/console/")
        assert "/console/login" in tab.url
        assert "con_secret_svc" not in tab.content()

        sign_in(tab, eas_server)
        tab.wait_for_selector("tr[data-service=con_secret_svc]")
        cookie = next(c for c in context.cookies() if c["name"] == "eas_console")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert tab.evaluate("document.cookie") == ""  # no script can read the session

        tab.click("text=Sign out")
        tab.wait_for_url("**/console/login")
        tab.goto(f"{eas_server.endpoint}/console/")
        assert "/console/login" in tab.url
        # the signed-out cookie is dead on the server too, not just gone from the browser
        replay = requests.get(f"{eas_server.endpoint}/console/", cookies={"eas_console": cookie["value"]},
                              allow_redirects=False, timeout=10)
        assert replay.status_code == 303
        assert "/console/login" in replay.headers["location"]
    finally:
        context.close()


def test_deploy_from_the_form_then_scale_and_follow_a_log(page, eas_server) -> None:
    page.click("text=Deploy a service")
    page.fill("#f-name", "con_form")
    page.check("input[name=kind][value=image]")
    page.fill("#f-image", "local")
    page.fill("#f-command", f"{sys.executable} {APPS / 'echo_app.py'}")
    page.fill("#f-port", "8000")
    page.fill("#f-instances", "1")
    page.click("#deploy-form button[type=submit]")
    page.wait_for_url("**/console/services/con_form?note=deployed")
    page.wait_for_selector("#status >> text=Running", timeout=POLL_TIMEOUT)  # the live fragment updates
    assert page.inner_text("#instances") == "1/1"

    page.fill("#scale-instances", "2")
    page.click("#scale-form button")
    page.wait_for_selector("#instances >> text=2/2", timeout=POLL_TIMEOUT)
    page.wait_for_selector("#status >> text=Running", timeout=POLL_TIMEOUT)
    assert eas_server.client.describe("con_form").running_instances == 2

    first = page.get_attribute("[data-log-instance]", "data-log-instance")
    page.click(f"[data-log-instance='{first}']")
    page.wait_for_function(
        "id => document.getElementById('log-text').textContent.includes(`echo_app ${id} listening on`)", arg=first
    )

    page.goto(f"{eas_server.endpoint}/console/")
    row = page.locator("tr[data-service=con_form]")
    assert "Running" in row.inner_text()
    assert row.locator(".instances").inner_text() == "2/2"


def test_a_wrong_spec_is_shown_at_its_field(page, eas_server) -> None:
    page.goto(f"{eas_server.endpoint}/console/deploy")
    page.fill("#f-name", "Not A Name")
    page.fill("#f-model_path", "")
    page.fill("#f-instances", "many")
    page.click("#deploy-form button[type=submit]")
    assert "is not a valid service name" in page.inner_text(".field-error[data-field=name]")
    assert "integer" in page.inner_text(".field-error[data-field=instances]")
    assert page.input_value("#f-name") == "Not A Name"  # what was typed stays


def test_spec_edit_with_a_bad_field_shows_it_and_changes_nothing(page, eas_server) -> None:
    eas_server.client._call("POST", "/api/v2/services", json=echo_spec("con_edit", instances=0))
    page.goto(f"{eas_server.endpoint}/console/services/con_edit")
    spec = json.loads(page.input_value("#spec"))
    spec["containers"][0]["port"] = 8080
    page.fill("#spec", json.dumps(spec))
    page.click("#spec-form button")
    assert "containers.0.port" in page.inner_text("#spec-errors")
    assert "reserved" in page.inner_text("#spec-errors")
    assert eas_server.client.describe("con_edit").version == 1


def test_group_weights_set_with_the_control_show_in_eas_group_desc(page, eas_server) -> None:
    client = eas_server.client
    for name in ("con_g_a", "con_g_b"):
        client._call("POST", "/api/v2/services", json=echo_spec(name, group="con_g"))
    for name in ("con_g_a", "con_g_b"):
        wait_running(client, name)
    page.goto(f"{eas_server.endpoint}/console/groups/con_g")
    page.fill("#w-con_g_a", "30")
    page.fill("#w-con_g_b", "70")
    page.click("#traffic-form button")
    page.wait_for_url("**/console/groups/con_g?note=*")
    out = subprocess.run(
        [sys.executable, "-m", "airflow_eas.cli", "group", "desc", "con_g", "--json",
         "--endpoint", eas_server.endpoint, "--token", eas_server.token],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert {m["service"]: m["weight"] for m in json.loads(out)["members"]} == {"con_g_a": 30, "con_g_b": 70}
    assert page.inner_text("tr[data-member=con_g_b] .weight") == "70%"
    assert "Candidate con_g_a" in page.inner_text("#rollout").replace("\n", " ")  # a split is a rollout
    # the split shows live: traffic through the group lands on both members
    for _ in range(60):
        client.invoke("con_g", b"{}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#members tbody tr')].every(r => !r.cells[5].textContent.includes('–'))"
    )


def test_after_traffic_the_chart_shows_points(page, eas_server) -> None:
    client = eas_server.client
    client._call("POST", "/api/v2/services", json=echo_spec("con_chart"))
    wait_running(client, "con_chart")
    deadline = time.time() + 12  # across one 10-second boundary at least
    while time.time() < deadline:
        status, _ = client.invoke("con_chart", b"{}")
        assert status == 200
        time.sleep(0.05)
    wait_until(lambda: sum(client.series("con_chart").points["requests"]) > 0, 30, "a point with requests")
    page.goto(f"{eas_server.endpoint}/console/services/con_chart")
    chart = page.locator(".chart[data-title='Requests/s']")
    chart.wait_for()
    assert int(chart.get_attribute("data-points")) > 0
    assert page.locator(".chart[data-title='Requests/s'] canvas").count() == 1
    page.wait_for_function(
        "() => +document.querySelector(\".chart[data-title='Memory per instance']\").dataset.points > 0",
        timeout=30_000,
    )
    page.click("[data-window='24h']")
    page.wait_for_selector("[data-series][data-loaded='24h']")
    assert int(page.get_attribute(".chart[data-title='Requests/s']", "data-points")) > 0


def test_a_script_in_the_env_is_shown_as_text(page, eas_server) -> None:
    evil = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
    eas_server.client._call("POST", "/api/v2/services", json=echo_spec("con_xss", instances=0, GREETING=evil))
    page.goto(f"{eas_server.endpoint}/console/services/con_xss")
    assert evil in page.input_value("#spec")  # shown as the text it is
    assert page.evaluate("window.__pwned") is None
    assert "<script>window.__pwned" not in page.content().split("<textarea", 1)[0]


def test_actions_without_a_session_or_csrf_token_are_refused(page, eas_server) -> None:
    client = eas_server.client
    client._call("POST", "/api/v2/services", json=echo_spec("con_guarded", instances=0))
    url = f"{eas_server.endpoint}/console/services/con_guarded/scale"
    anonymous = requests.post(url, data={"instances": "3"}, allow_redirects=False, timeout=10)
    assert anonymous.status_code == 403
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "eas_console")
    page.goto(f"{eas_server.endpoint}/console/services/con_guarded")
    csrf = page.get_attribute("body", "data-csrf")
    for data, headers in (({"instances": "3"}, {}), ({"instances": "3", "csrf_token": "forged"}, {}),
                          ({"instances": "3"}, {"X-CSRF-Token": "forged"})):
        refused = requests.post(url, data=data, headers=headers, cookies={"eas_console": cookie},
                                allow_redirects=False, timeout=10)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text
    assert client.describe("con_guarded").instances == 0
    fragment = requests.get(f"{eas_server.endpoint}/console/services/con_guarded/token", timeout=10)
    assert fragment.status_code == 401
    assert "token" not in fragment.json()
    allowed = requests.post(url, data={"instances": "0", "csrf_token": csrf}, cookies={"eas_console": cookie},
                            allow_redirects=False, timeout=10)
    assert allowed.status_code == 303
    assert re.search(r"/console/services/con_guarded\?note=", allowed.headers["location"])


def test_the_token_shows_only_once_revealed(page, eas_server) -> None:
    eas_server.client._call("POST", "/api/v2/services", json=echo_spec("con_token", instances=0))
    token = eas_server.client.describe("con_token").token
    page.goto(f"{eas_server.endpoint}/console/services/con_token")
    assert token not in page.content()
    page.click("#reveal")
    page.wait_for_selector(f"#token >> text={token}")
    page.click("text=Call it")
    assert token in page.inner_text("#snippet-curl")
    assert token in page.inner_text("#snippet-python")
    with page.expect_popup() as popup:
        page.click("#webapp")
    assert popup.value.url.endswith(f"/api/predict/con_token/?token={token}")  # the web app's own link
