"""Walk every URL pattern of the pages and the API as anonymous and as an outsider.

New apps' URLs are walked without touching this file: patterns come from the resolver, the
objects from ``world`` (one of each model, owned by Payments, where carol is an outsider), the
steps of workflow URLs (``<slug:step>``) from their model's ``TRANSITIONS``.
"""

from __future__ import annotations

import re

import pytest
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve

from meshadmin.models import APIToken, AuditEntry, Team
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

PUBLIC = {"/login/", "/healthz"}
#: Pages read by machines with an API token, which answer 401 as the API does (no login page).
TOKEN_PAGES = {"/metrics"}
MAX_OBJECTS = 5
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # Django's admin has its own, tested, staff-only gate
            yield from _walk(entry.url_patterns, prefix + _plain(str(entry.pattern)))
        elif isinstance(entry, URLPattern):
            yield prefix + _plain(str(entry.pattern))


def _plain(piece: str) -> str:
    """A regex route piece (DRF's routers) in the ``<name>`` form of path routes."""
    return _REGEX_GROUP.sub(r"<\1>", piece.lstrip("^").rstrip("$"))


def _concrete(route: str, pk: int, step: str = "x") -> str | None:
    if "<format>" in route or "(" in route:
        return None  # DRF's format-suffix variants: the plain route is walked
    return "/" + _PARAM.sub(lambda m: str(pk) if m.group(1) in ("int", None) else step, route)


def _steps(url: str) -> list[str]:
    """For a workflow URL (``<slug:step>``): every step of its model, and one that does not exist."""
    try:
        match = resolve(url)
    except Resolver404:
        return ["x"]
    cls = getattr(match.func, "view_class", None)
    model = getattr(getattr(cls, "queryset", None), "model", None)
    return [*getattr(model, "TRANSITIONS", {}), "x"]


@pytest.fixture
def world(payments, logistics, store, personas):
    """One object of every governed model, owned by Payments, and the secrets carol must never see."""
    from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
    from subscriptions.models import Subscription, SubscriptionChange
    from topics.models import Topic

    topic = Topic.objects.create(name="payments.secret", team=payments, store=store)
    token = APIToken(user=personas["alice"], description="alice-private-token")
    token.generate()
    token.save()
    app = Application.objects.create(name="checkout", team=payments)
    key = ApplicationKey(application=app, description="checkout-private-key")
    plain_key = key.generate()
    key.save()
    AccessRule.objects.create(team=payments, principal_kind=AccessRule.APPLICATION, principal_application=app,
                              topic_pattern=topic.name, publish=True)
    route = RoutingRule.objects.create(team=payments, source_pattern="payments.*")
    route.targets.set([Topic.objects.create(name="audit.payments", team=payments, store=store)])
    # A request that waits for a third team (carol is on neither side of it)
    compliance = Team.objects.create(name="Compliance", slug="compliance")
    Topic.objects.create(name="compliance.cases", team=compliance, store=store)
    asked = RoutingRule.objects.create(team=payments, source_pattern="compliance.cases", source_team=compliance,
                                       state=RoutingRule.REQUESTED)
    asked.targets.set([topic])
    subscription = Subscription.objects.create(topic=topic, application=app, webhook_url="https://example.com/h")
    SubscriptionChange.objects.create(subscription=subscription, before={"webhook_url": "https://example.com/h"},
                                      after={"webhook_url": "https://example.com/new"})
    return {"markers": ["alice-private-token", token.prefix, token.digest, "checkout-private-key", key.sha256,
                        plain_key, subscription.signing_secret]}


def _urls():
    return sorted({route for route in _walk(get_resolver().url_patterns)})


def test_anonymous_requests_get_the_login_page_or_401_everywhere(world, client):
    before = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    for route in _urls():
        url = _concrete(route, 1)
        if url is None or url in PUBLIC or url.startswith("/static/"):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            response = getattr(client, method)(url)
            if url.startswith("/api/") or url in TOKEN_PAGES:
                assert response.status_code == 401, (method, url, response.status_code)
            else:
                assert response.status_code == 302 and response["Location"].startswith("/login/"), \
                    (method, url, response.status_code)
    assert not AuditEntry.objects.filter(pk__gt=before).exists()


def _objects_for(url: str) -> list[int]:
    """The pks to try on a URL: every object of the model its view serves (the newest few)."""
    try:
        match = resolve(url)
    except Resolver404:
        return []
    view = match.func
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    queryset = getattr(cls, "queryset", None)
    if queryset is None:
        return [1]
    return list(queryset.model._base_manager.order_by("-pk").values_list("pk", flat=True)[:MAX_OBJECTS])


def test_an_outsider_changes_nothing_and_sees_no_secret(world, personas):
    """carol (Logistics) tries every verb on every URL with the ids of every object there is."""
    carol = client_for(personas["carol"])
    before = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    walked, reviewed = 0, set()
    for route in _urls():
        probe = _concrete(route, 1)
        if probe is None or probe.startswith("/static/") or probe == "/logout/":
            continue
        pks = _objects_for(probe) if "<" in route else [1]
        steps = _steps(probe) if "<slug:step>" in route else ["x"]
        for pk, step in ((pk, step) for pk in pks for step in steps):
            url = _concrete(route, pk, step)
            response = carol.get(url)
            walked += 1
            if step == "approve":
                reviewed.add(url.split("/")[1])
            body = response.content.decode(errors="replace")
            for marker in world["markers"]:
                assert marker not in body, (url, marker)
            if "<" not in route:
                continue  # collection URLs: POST creates for carol's own team, tested elsewhere
            for method in ("post", "put", "patch", "delete"):
                response = getattr(carol, method)(url, {}, content_type="application/json")
                assert response.status_code in (400, 403, 404, 405), (method, url, response.status_code)
    changed = AuditEntry.objects.filter(pk__gt=before).exclude(actor_name="carol", team__isnull=True)
    assert not changed.exclude(team=personas["carol"].memberships.get().team).exists(), list(changed)
    assert walked > 50
    assert {"subscriptions", "subscriptionchanges", "routingrules"} <= reviewed  # every workflow step was tried
