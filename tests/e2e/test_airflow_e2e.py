"""The rollout DAG run as users run it: real Airflow components, the REST API, a real eas server."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from airflow_eas.demo import TrafficDriver
from airflow_eas.plan import write_dag_file
from airflow_eas.spec import parse_spec
from tests.conftest import echo_spec, wait_until
from tests.e2e.conftest import AirflowDeployment, ComponentsDidNotStart
from tests.plans import echo_service, rollout_plan

# Within the run's own limits: components up in START_TIMEOUT (90 s), the run in 120 s, then the checks.
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(300)]

GROUP = "e2e"
DAG_ID = "e2e_canary_release"
# Tasks that must defer. A sensor checks inline for MIN_DEFER_SECONDS (8 s) before it defers, and how late
# Airflow starts it on a loaded machine is anyone's guess, so the two sensors' outcomes are held back until
# the test has seen them deferred: the new version listens only once wait_ready is seen deferred (its
# START_WHEN_FILE appears), and the canary gets enough requests for a verdict only once analysis_50 is
# seen deferred (a second client joins: before, the canary's share of RPS fills at most
# RPS / 2 * window_seconds = 200 requests of a window, fewer than min_requests). Bakes and promote's
# scale-down delay are longer than 8 s, so they always wait on timer triggers.
MUST_DEFER = ("wait_ready", "bake_50", "analysis_50", "bake_100", "promote")
RPS = 20
BOOST_RPS = 40  # the canary's share of RPS + BOOST_RPS fills a window with 600 requests
WINDOW_SECONDS = 20
MIN_REQUESTS = 350  # 150 above what RPS alone gives: room for a client catching up after a stall


def plan(listen_when: Path) -> dict[str, Any]:
    """A canary rollout of tests/apps/echo_app.py, fast: two steps, 10 s bakes, a 10 s scale-down delay."""
    return rollout_plan(
        DAG_ID,
        GROUP,
        service=echo_service(APP_VERSION="{{ params.version }}", START_WHEN_FILE=str(listen_when)),
        params={"version": "1"},
        bake_seconds=10,
        analysis={
            "window_seconds": WINDOW_SECONDS,
            "min_requests": MIN_REQUESTS,
            "max_error_rate": 0.05,
            "timeout_seconds": 60,
            "poll_seconds": 1,
            "inconclusive_limit": 60,  # the window fills for ~23 s: those measurements have too little data
        },
        scale_down_delay_seconds=10,
        timeouts={"ready_seconds": 40},
        deferrable=True,  # the test is about deferral (the default follows [operators] default_deferrable)
    )


def test_rollout_through_a_real_airflow_deployment(
    airflow_deployment: AirflowDeployment, eas_server, tmp_path: Path
) -> None:
    assert RPS / 2 * WINDOW_SECONDS + 150 <= MIN_REQUESTS < (RPS + BOOST_RPS) / 2 * WINDOW_SECONDS
    began = time.monotonic()
    client = eas_server.client
    # Version 1 serves the group with all traffic, as an earlier release left it.
    v1 = echo_spec(f"{GROUP}_blue", group=GROUP, APP_VERSION="1")
    client.create(parse_spec(v1))
    wait_until(lambda: client.describe(f"{GROUP}_blue").ready, 30, "version 1 ready")
    client.set_traffic(GROUP, {f"{GROUP}_blue": 100})

    af = airflow_deployment
    listen_when = tmp_path / "v2-may-listen"
    write_dag_file(af.dags_folder, plan(listen_when))
    try:
        af.start()
    except ComponentsDidNotStart as exc:
        pytest.skip(f"Airflow's components could not start here: {exc}")
    started = time.monotonic()
    _no_listener_beyond_localhost(af)

    af.login()
    dag = af.wait_for_dag(DAG_ID)
    assert dag["is_paused"], "a new DAG starts paused (core.dags_are_paused_at_creation)"
    assert af.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})["is_paused"] is False

    token = client.describe_group(GROUP).token
    url, body = f"{eas_server.gateway}/api/predict/{GROUP}", b'{"instances": [[1, 2]]}'
    traffic = TrafficDriver(url, token, body, rps=RPS)
    boost, boosted = TrafficDriver(url, token, body, rps=BOOST_RPS), False
    traffic.start()
    try:
        # What the UI's trigger form sends: no logical date, the run's conf.
        run = af.api(
            "POST", f"/dags/{DAG_ID}/dagRuns", expect=200, json={"logical_date": None, "conf": {"version": "2"}}
        )
        run_id = run["dag_run_id"]
        seen: dict[str, set[str]] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tis = af.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            for ti in tis:
                seen.setdefault(ti["task_id"], set()).add(str(ti["state"]))
            if "deferred" in seen.get("wait_ready", ()):
                listen_when.touch()
            if "deferred" in seen.get("analysis_50", ()) and not boosted:
                boost.start()
                boosted = True
            run = af.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                break
            time.sleep(0.3)
        time.sleep(1)
    finally:
        traffic.stop()
        if boosted:
            boost.stop()
    ran = time.monotonic() - started

    states = {ti["task_id"]: ti["state"] for ti in tis}
    # The sensors, bakes and promote deferred to the triggerer instead of waiting in a worker: the API
    # showed the sensors deferred while they waited (their outcomes waited for that), and their logs (the
    # UI's log view, via the API) hold the triggerer's lines of their trigger, which only the triggerer writes.
    deferred = {task for task, s in seen.items() if "deferred" in s}
    assert {"wait_ready", "analysis_50"} <= deferred, f"sensors not seen deferred; states seen: {seen}"
    assert run["state"] == "success", f"run {run['state']} after {ran:.0f} s: {states}\n{af.problems()}"
    assert run["conf"] == {"version": "2"}
    assert states["promote"] == "success", states
    assert states["rollback"] == "skipped", states
    assert {m.service: m.weight for m in client.describe_group(GROUP).members} == {
        f"{GROUP}_blue": 0,
        f"{GROUP}_green": 100,
    }
    for task in MUST_DEFER:
        log = _task_log(af, run_id, task)
        assert "Pausing task as DEFERRED" in log, f"{task} did not defer:\n{log[-3000:]}"
        started_line = re.search(rf"trigger {DAG_ID}/{re.escape(run_id)}/{task}/-1/1 \(ID \d+\) starting", log)
        assert started_line, f"{task}: no trigger run by the triggerer in its log:\n{log[-3000:]}"
        assert "Trigger fired event" in log, f"{task}: its trigger fired no event:\n{log[-3000:]}"
    # The client saw no errors while traffic moved from version 1 to version 2.
    for client_ in (traffic, boost):
        assert client_.failures_at == [], f"client errors during the rollout: {client_.failures_at[:5]}"
        assert client_.errors == 0
    assert traffic.answers["version 1"] > 0
    assert traffic.answers["version 2"] > 0
    wait_until(lambda: client.describe(f"{GROUP}_blue").status == "Stopped", 20, "old member stopped")
    print(
        f"\nAirflow up in {started - began:.1f} s (incl. seeding), run {ran:.1f} s, "
        f"deferred: {sorted(deferred)}, clients: {traffic.summary()}; {boost.summary()}"
    )

    # The EAS console, mounted in the api-server by the plugin: behind Airflow's own login.
    console = f"{af.url}/eas/"
    assert requests.get(console, timeout=10).status_code in (401, 403), "the console needs an Airflow login"
    page = af._session.get(console, timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert f"{GROUP}_green=100%" in page.text, page.text[:500]
    assert token not in page.text, "tokens are never shown"
    # The rollout view: a tab of each DAG run, behind Airflow's login and DAG-run permission.
    views = [v for p in af.api("GET", "/plugins")["plugins"] for v in p["external_views"]]
    assert any(v["destination"] == "dag_run" and "{RUN_ID}" in v["href"] for v in views), views
    rollout = f"{af.url}/eas/rollouts/{DAG_ID}/{run_id}"
    assert requests.get(rollout, timeout=10).status_code in (401, 403), "the rollout view needs an Airflow login"
    view = af._session.get(rollout, timeout=30)
    assert view.status_code == 200, view.text[:500]
    assert "promoted" in view.text, view.text[:500]
    assert f"{GROUP}_green" in view.text, view.text[:500]
    data = af._session.get(f"{rollout}/data", timeout=30).json()
    assert data["outcome"] == "promoted"
    assert data["weights"]["candidate"][-1] == 100
    _rollout_tab_in_the_ui(af, run_id)

    _no_listener_beyond_localhost(af)
    processes = af.processes_alive()
    stopping = time.monotonic()
    af.stop()
    print(f"Airflow stopped in {time.monotonic() - stopping:.1f} s")
    left = [p for p in processes if _running(p)]
    assert not left, f"processes left after stop: {left}"


def _rollout_tab_in_the_ui(af: AirflowDeployment, run_id: str) -> None:
    """The run's Rollout tab in Airflow's own UI (an iframe of the plugin) draws its charts; where Chromium
    is here (`make system`). ``EAS_SCREENSHOTS=DIR`` keeps a picture of it."""
    from tests.server.console.conftest import CHROMIUM

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    if not CHROMIUM.exists():
        return
    token = af._session.headers["Authorization"].split()[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1440, "height": 1200})
        context.add_cookies([{"name": "_token", "value": token, "url": f"{af.url}/"}])
        page = context.new_page()
        page.goto(f"{af.url}/dags/{DAG_ID}/runs/{run_id}/plugin/eas-rollout")
        frame = page.frame_locator("iframe")
        frame.locator("#charts[data-loaded='1']").wait_for(timeout=60_000)
        weights = frame.locator(".chart[data-title='Traffic weight']")
        assert int(weights.get_attribute("data-points")) > 0
        assert "promoted" in frame.locator("#outcome").inner_text()
        if os.environ.get("EAS_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["EAS_SCREENSHOTS"]) / "airflow-rollout-tab.png"))
        browser.close()


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE  # is_running: same pid, same process
    except psutil.NoSuchProcess:
        return False


def _task_log(af: AirflowDeployment, run_id: str, task_id: str) -> str:
    """The text of a task's first try, from the REST API (the UI's log view)."""
    body = af.api(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        params={"full_content": "true"},
        headers={"Accept": "application/json"},
    )
    content = body.get("content")
    if isinstance(content, list):
        return "\n".join(str(entry.get("event", "")) if isinstance(entry, dict) else str(entry) for entry in content)
    return str(content)


def _no_listener_beyond_localhost(af: AirflowDeployment) -> None:
    """Every socket our Airflow processes listen on is bound to 127.0.0.1."""
    pids = {p.pid for p in af.processes_alive()}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert listening, "the api-server listens somewhere"
    wide = [(c.pid, c.laddr) for c in listening if c.laddr.ip not in ("127.0.0.1", "::1")]
    assert not wide, f"Airflow listens beyond localhost: {wide}"
