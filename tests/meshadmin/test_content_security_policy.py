"""The Content-Security-Policy: every page of every persona carries the strict policy, and no
template needs more (no inline script, event handler or style attribute).

The browser side (no violation reported while pages load) is tests/e2e/test_content_security_policy.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.template.loaders.app_directories import get_app_template_dirs

from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture
from tests.portal_support.pages import mesh_world, page_urls  # noqa: F401 - mesh_world is a fixture
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

#: The policy, directive by directive; the websocket origin is the request's own host.
STRICT = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "font-src": {"'self'"},
    "connect-src": {"'self'", "ws://testserver"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}


def parse_policy(header: str) -> dict[str, set[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = set(values)
    return directives


def assert_strict(response, url: str) -> None:
    header = response.get("Content-Security-Policy")
    assert header, f"{url} ({response.status_code}) has no Content-Security-Policy"
    assert parse_policy(header) == STRICT, (url, header)


@pytest.mark.parametrize("persona", ["anonymous", "alice", "bob", "dave", "carol", "sam"])
@pytest.mark.usefixtures("mesh_world")
def test_every_page_carries_the_strict_policy(persona, personas):
    user = personas.get(persona)
    client = client_for(user)
    client.raise_request_exception = False  # a 500 is another URL walk's finding; its page carries the policy too
    walked = 0
    for url in page_urls(user):
        response = client.get(url)
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        assert_strict(response, url)
        walked += 1
    assert walked >= (1 if persona == "anonymous" else 40)


def test_error_pages_carry_it_too(personas, as_user):
    bob = as_user("bob")
    assert_strict(bob.get("/no/such/page/"), "404")
    assert_strict(bob.get("/admin/"), "admin as a non-staff user")


def test_the_websocket_origin_is_the_pages_own_host(personas, settings):
    settings.ALLOWED_HOSTS = ["mesh.example.com"]
    client = client_for(personas["bob"])
    secure = parse_policy(client.get("/", HTTP_HOST="mesh.example.com", secure=True)["Content-Security-Policy"])
    plain = parse_policy(client.get("/", HTTP_HOST="mesh.example.com")["Content-Security-Policy"])
    assert secure["connect-src"] == {"'self'", "wss://mesh.example.com"}
    assert plain["connect-src"] == {"'self'", "ws://mesh.example.com"}


def test_the_api_docs_load_their_script_from_a_url_of_their_own(personas):
    client = client_for(personas["bob"])
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert_strict(page, "/api/docs/")
    body = page.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body) and "<style" not in body
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
STYLE = re.compile(r"<style\b|<[^>]+\sstyle\s*=", re.IGNORECASE)


def template_files() -> list[Path]:
    folders = [Path(d) for engine in django_settings.TEMPLATES for d in engine["DIRS"]]
    folders += [Path(d) for d in get_app_template_dirs("templates") if str(d).startswith(str(django_settings.BASE_DIR))
                and ".venv" not in str(d)]
    return sorted(path for folder in folders for path in folder.rglob("*.html"))


def test_no_template_has_an_inline_script_an_event_handler_or_a_style():
    """What the policy would refuse in a browser, found in the source (json_script's
    ``<script type="application/json">`` is data, not code, and is allowed)."""
    files = template_files()
    assert len(files) > 30
    found = [f"{path.relative_to(django_settings.BASE_DIR)}: {pattern.pattern}"
             for path in files for pattern in (INLINE_SCRIPT, EVENT_HANDLER, STYLE)
             if pattern.search(path.read_text())]
    assert found == []
