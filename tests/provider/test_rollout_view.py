"""The Airflow rollout view on a real canary run: dag.test(), real eas server, Airflow's auth manager."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_eas.demo import TrafficDriver
from airflow_eas.server.embedded import free_port
from tests.conftest import wait_until
from tests.plans import rollout_plan
from tests.provider.conftest import run_plan
from tests.provider.test_dag_runs import seed_group

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def released(eas_conn, airflow_db) -> Iterator[tuple[str, str]]:
    """A canary release of group ``viewed`` under client traffic: (dag_id, run_id)."""
    client, group = eas_conn.client, "viewed"
    seed_group(client, group)
    token = client.describe_group(group).token
    traffic = TrafficDriver(f"{eas_conn.gateway}/api/predict/{group}", token, b'{"instances": [[1, 2]]}',
                            rps=30).start()
    try:
        time.sleep(1)
        run = run_plan(rollout_plan("viewed_release", group, bake_seconds=6, analysis={
            "window_seconds": 4, "min_requests": 15, "max_error_rate": 0.05, "max_p99_ms": 500,
            "timeout_seconds": 30, "poll_seconds": 1}))
        time.sleep(1)
    finally:
        traffic.stop()
    assert run.state == "success"
    # the series sampler folds the run's last seconds into a point within 11 s
    wait_until(lambda: sum(client.series("viewed_green").points["requests"]) > 0, 25, "points of the candidate")
    return run.dag_id, run.run_id


@pytest.fixture(scope="module")
def plugin_app(airflow_db):
    from airflow.api_fastapi.app import init_auth_manager

    from airflow_eas.plugin import create_app

    return init_auth_manager(), create_app()


def bearer(auth_manager, role: str | None) -> dict[str, str]:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))
    return {"Authorization": f"Bearer {token}"}


def test_the_rollout_view_draws_weights_verdicts_and_both_members(released, plugin_app) -> None:
    from fastapi.testclient import TestClient

    dag_id, run_id = released
    auth_manager, app = plugin_app
    http = TestClient(app)
    url = f"/rollouts/{dag_id}/{run_id}"
    assert http.get(url).status_code == 401  # Airflow's own sign-in guards the view
    assert http.get(url, headers=bearer(auth_manager, None)).status_code == 403  # a user without any role

    page = http.get(url, headers=bearer(auth_manager, "viewer"))
    assert page.status_code == 200, page.text
    assert "viewed_green" in page.text
    assert "viewed_blue" in page.text
    assert "analysis at 50%: Successful" in page.text
    assert "promoted viewed_green" in page.text

    data = http.get(f"{url}/data", headers=bearer(auth_manager, "viewer")).json()
    assert (data["candidate"], data["stable"], data["outcome"]) == ("viewed_green", "viewed_blue", "promoted")
    assert data["weights"]["candidate"][1:4] == [50, 100, 100]  # the 50 % step, the 100 % step, promotion
    assert [v["step"] for v in data["verdicts"] if v["passed"]] == [50, 100]
    assert data["thresholds"]["max_error_rate"] == 0.05
    assert data["thresholds"]["max_p99_ms"] == 500
    candidate = data["metrics"]["candidate"]
    assert candidate["t"], data["metrics_note"]
    assert any(r for r in candidate["rps"]), data["metrics_note"]
    assert all(e in (None, 0.0) for e in candidate["error_rate"])
    assert data["metrics"]["stable"]["t"], "the stable member's points are drawn too"

    missing = http.get(f"/rollouts/{dag_id}/no-such-run", headers=bearer(auth_manager, "viewer"))
    assert missing.status_code == 404


def test_the_rollout_view_in_a_browser(released, plugin_app, tmp_path: Path) -> None:
    """Chromium draws the three charts with their points; the screenshot goes to the README when asked."""
    import uvicorn

    from tests.server.console.conftest import CHROMIUM

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make system installs it with apt-get)")
    dag_id, run_id = released
    auth_manager, app = plugin_app
    from fastapi import FastAPI

    api_server = FastAPI()  # as Airflow's api-server mounts the plugin's app
    api_server.mount("/eas", app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_server, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the plugin app to listen")
    try:
        token = bearer(auth_manager, "viewer")["Authorization"].split()[1]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1200, "height": 1100})
            context.add_cookies([{"name": "_token", "value": token, "url": f"http://127.0.0.1:{port}/"}])
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/eas/rollouts/{dag_id}/{run_id}")
            page.wait_for_selector("#charts[data-loaded='1']")
            for title in ("Traffic weight", "Error rate", "p99 latency"):
                assert int(page.get_attribute(f".chart[data-title='{title}']", "data-points")) > 0, title
            assert page.locator("#charts canvas").count() == 3
            shots = Path(os.environ.get("EAS_SCREENSHOTS", tmp_path))
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "airflow-rollout.png"), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_eas_pages_need_a_user_who_may_read_the_connection(released, plugin_app) -> None:
    from fastapi.testclient import TestClient

    auth_manager, app = plugin_app
    http = TestClient(app)
    assert http.get("/").status_code == 401
    assert http.get("/", headers=bearer(auth_manager, "viewer")).status_code == 403  # connections need "op"
    page = http.get("/", headers=bearer(auth_manager, "op"))
    assert page.status_code == 200
    assert "viewed_green=100%" in page.text
    assert "viewed_blue=0%" in page.text
    service = http.get("/services/viewed_green", headers=bearer(auth_manager, "op"))
    assert service.status_code == 200
    assert "Running" in service.text
    assert http.get("/services/viewed_green").status_code == 401
