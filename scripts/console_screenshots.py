"""Screenshots of the console for the README: a live server, a group under traffic, a headless Chromium.

    PYTHONPATH=. .venv/bin/python scripts/console_screenshots.py [docs/screenshots]

Needs HAProxy and Chromium (``make system``) and Playwright (the dev extra). About a minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from airflow_eas.demo import TrafficDriver
from airflow_eas.server.embedded import start_embedded

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import echo_spec, wait_running  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    server = start_embedded(Path(tempfile.mkdtemp(prefix="eas-shots-")))
    try:
        client = server.client
        specs = [echo_spec("fraud_blue", instances=2, group="fraud", APP_VERSION="1"),
                 echo_spec("fraud_green", instances=1, group="fraud", APP_VERSION="2", SLOW_MS="15"),
                 echo_spec("churn_scorer", instances=1, FAIL_RATE="0.02")]
        for spec in specs:
            client._call("POST", "/api/v2/services", json=spec)
        for spec in specs:
            wait_running(client, spec["name"])
        client.set_traffic("fraud", {"fraud_blue": 80, "fraud_green": 20})
        client.acquire_lease("fraud", "fraud_release/scheduled__2026-11-25T02:00:00+08:00", 600)
        drivers = [
            TrafficDriver(f"{server.gateway}/api/predict/fraud", client.describe_group("fraud").token, b"{}",
                          rps=40).start(),
            TrafficDriver(f"{server.gateway}/api/predict/churn_scorer", client.describe("churn_scorer").token,
                          b"{}", rps=15).start(),
        ]
        time.sleep(65)  # a few 10-second points on the charts
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("dialog", lambda d: d.accept())
            page.goto(f"{server.endpoint}/console/")
            page.screenshot(path=str(out / "console-sign-in.png"))
            page.fill("#token", server.token)
            page.click("#login button[type=submit]")
            page.wait_for_selector("tr[data-service=fraud_blue]")
            time.sleep(2.5)
            page.set_viewport_size({"width": 1360, "height": 330})
            page.screenshot(path=str(out / "console-services.png"))
            page.set_viewport_size({"width": 1360, "height": 900})
            page.goto(f"{server.endpoint}/console/services/fraud_green")
            page.wait_for_selector(".chart[data-title='Memory per instance'] canvas")
            page.click("[data-log-instance]")
            page.wait_for_function("() => document.getElementById('log-text').textContent.length > 0")
            page.screenshot(path=str(out / "console-service.png"), full_page=True)
            page.goto(f"{server.endpoint}/console/groups/fraud")
            page.wait_for_selector(".chart[data-title='p99 latency'] canvas")
            page.screenshot(path=str(out / "console-group.png"), full_page=True)
            page.goto(f"{server.endpoint}/console/deploy")
            page.fill("#f-name", "Fraud-Blue")
            page.fill("#f-model_path", "")
            page.click("#deploy-form button[type=submit]")
            page.screenshot(path=str(out / "console-deploy.png"), full_page=True)
            browser.close()
        for d in drivers:
            d.stop()
    finally:
        server.stop()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
