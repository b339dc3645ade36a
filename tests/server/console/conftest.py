"""A real browser for the console tests: Debian's Chromium driven by Playwright, one per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]' brings it)")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make system installs it with apt-get)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def sign_in(page, server, token: str | None = None) -> None:
    page.goto(f"{server.endpoint}/console/")
    page.fill("#token", token if token is not None else server.token)
    page.click("#login button[type=submit]")


@pytest.fixture
def page(browser, eas_server):
    """A signed-in tab of its own (cookies are not shared between tests); confirmations accepted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.set_default_timeout(20_000)
    sign_in(tab, eas_server)
    tab.wait_for_url("**/console/")
    yield tab
    context.close()
