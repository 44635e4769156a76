"""A real headless Chromium (Debian's ``chromium``) driven by Playwright against a live server.

Playwright's own browser downloads are not used: the executable path points at the system's
Chromium. Its background networking is switched off because the test machine has no internet.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams
from tests.portal_support.personas import PASSWORD
from tests.portal_support.runtime import mesh_runtime  # noqa: F401 - a real runtime beside the portal

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test
# body are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, for the block. Playwright's sync API keeps an event loop
    running in this thread meanwhile, so ``async_to_sync`` (a push does it) cannot run here:
    open it after such set-up."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module: its event loop, left running in this thread, would break later
    tests that call ``async_to_sync``."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def new_page(browser, live_server):
    """``new_page()`` opens a fresh browser context (its own cookies) on the live server."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


@pytest.fixture
def logged_in(new_page):
    """``logged_in("bob")`` is a page signed in as that persona."""

    def make(username: str):
        page = new_page()
        log_in(page, username)
        return page

    return make
