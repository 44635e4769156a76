"""No Content-Security-Policy violation in a real browser, on any page, as any persona.

Pages come from the resolver (tests/portal_support/pages.py) with objects of a seeded mesh, so
pages added later are walked too. A violation is what Chromium reports: a
``securitypolicyviolation`` event in the page, or its console message about the policy. Each
page must also have been served with the strict policy, or there would be nothing to violate.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from django.test import Client

from tests.e2e.conftest import chromium, log_in
from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture
from tests.portal_support.pages import mesh_world, page_urls  # noqa: F401 - mesh_world is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("mesh_world")]

#: Records the policy violations a page reports, before any of its own scripts runs.
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""


@pytest.fixture
def browser(request):
    """The conftest's Chromium, one per test here and started after the mesh is seeded: seeding
    pushes a config version, which cannot run while Playwright's event loop runs in this thread."""
    request.getfixturevalue("mesh_world")
    with chromium() as browser:
        yield browser


class ViolationWatch:
    """A browser page that remembers every policy violation it reports."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(LISTEN)
        page.on("console", lambda message: self.console.append(message.text)
                if "Content Security Policy" in message.text else None)

    def visit(self, url: str) -> list[str]:
        """Open ``url``; the violations it reported while loading (and what it was served without)."""
        self.console.clear()
        response = self.page.goto(url, wait_until="load")
        problems = []
        policy = response.headers.get("content-security-policy", "")
        if "default-src 'self'" not in policy or "unsafe-inline" in policy:
            problems.append(f"served without the strict policy: {policy!r}")
        self.page.wait_for_load_state("networkidle")  # late scripts and styles have run
        problems += self.page.evaluate("window.__cspViolations") + self.console
        return problems


def html_pages(user) -> list[str]:
    """The pages a persona is served as HTML (200 or an error page), each error status once.

    Asked from a thread of its own: Playwright's event loop runs in the test's thread, and a view
    that talks to an event store runs an event loop of its own (``topics.engines.call``), which
    cannot start in a thread whose loop runs. Asked from here, those pages answered 500 and only
    the first of them was walked, as an error page."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_html_pages, user).result()


def _html_pages(user) -> list[str]:
    try:
        return _walk(user)
    finally:
        connections.close_all()  # this thread's own: the test database is dropped after the run


def _walk(user) -> list[str]:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    pages, errors = [], set()
    for url in page_urls(user):
        response = client.get(url)
        if not response.get("Content-Type", "").startswith("text/html") or not response.content:
            continue  # not a page: JSON, or an empty answer such as a POST-only URL's 405
        assert response.status_code < 500, f"{url} answered {response.status_code}"
        if response.status_code != 200:
            if response.status_code in errors or response.status_code in (301, 302):
                continue
            errors.add(response.status_code)
        pages.append(url)
    return pages


@pytest.mark.parametrize("persona", ["anonymous", "alice", "bob", "dave", "carol", "sam"])
def test_no_page_reports_a_policy_violation(persona, new_page, personas):
    user = personas.get(persona)
    page = new_page()
    if user is not None:
        log_in(page, user.username)
    watch = ViolationWatch(page)
    pages = html_pages(user) if user is not None else ["/login/"]
    assert len(pages) >= (1 if user is None else 40)
    found = {url: problems for url in pages if (problems := watch.visit(url))}
    assert found == {}


def test_the_api_docs_work_under_the_policy(logged_in, personas):
    """Swagger UI (drf-spectacular-sidecar) renders the operations with the portal's policy."""
    page = logged_in("bob")
    watch = ViolationWatch(page)
    assert watch.visit("/api/docs/") == []
    page.wait_for_selector(".opblock-tag", timeout=30_000)
    page.click(".opblock-summary >> nth=0")  # expands an operation: more of the UI's rendering
    page.wait_for_selector(".opblock-body")
    assert page.evaluate("window.__cspViolations") + watch.console == []


def test_djangos_admin_works_under_the_policy(logged_in, personas):
    page = logged_in("sam")
    watch = ViolationWatch(page)
    found = {url: problems for url in ("/admin/", "/admin/auth/user/", f"/admin/auth/user/{personas['bob'].pk}/change/",
                                       "/admin/topics/topic/")
             if (problems := watch.visit(url))}
    assert found == {}


def test_scripts_moved_out_of_the_templates_still_work(logged_in, personas):
    """The select-all box (meshadmin.js) and the search that htmx swaps in, without violations."""
    page = logged_in("bob")
    watch = ViolationWatch(page)
    assert watch.visit("/topics/") == []
    page.check("[data-select-all]")
    boxes = page.locator("input[name=pk]")
    assert boxes.count() > 0 and all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    page.fill("input[name=q]#id_q", "orders.created")
    page.wait_for_selector("[data-testid=result-count]:has-text('1 result')")
    assert page.evaluate("window.__cspViolations") + watch.console == []
