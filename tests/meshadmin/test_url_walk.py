"""Walk every URL pattern of the pages and the API, and every websocket route, as every persona
with every method: nothing answers 5xx, nobody changes what is not theirs, no secret leaks.

New apps' URLs are walked without touching this file: patterns come from the resolver (and the
websocket routes from ``meshadmin.routing``), the objects from ``world`` (one of each model,
owned by Payments, plus one of Logistics where there is a catalog), the steps of workflow URLs
(``<slug:step>``) from their model's ``TRANSITIONS``.

The personas: anonymous; olga (signed in, in no team: an outsider); dave (a viewer of
Payments); carol (a member of Logistics, another team); sam (staff). Methods run one after
the other over every URL, deletions last, so that the objects live as long as possible.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve

from meshadmin.consumers import UNKNOWN_PATH
from meshadmin.models import APIToken, AuditEntry, Team
from tests.portal_support.factories import make_app_with_key, make_topic
from tracing.consumers import CLOSE_SIGNED_OUT

PUBLIC = {"/login/", "/healthz"}
MAX_OBJECTS = 3
#: Pages read by machines with an API token, which answer 401 as the API does (no login page).
TOKEN_PAGES = {"/metrics"}
#: Deletions last: DELETE, and POST (which deletes through the pages' delete forms).
METHODS = ("get", "head", "options", "put", "patch", "post", "delete")
PERSONAS = ("anonymous", "olga", "dave", "carol", "sam")
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


def _urls() -> list[str]:
    return sorted({route for route in _walk(get_resolver().url_patterns)})


def _objects_for(url: str) -> list[int]:
    """The pks to try on a URL: objects of the model its view serves (the newest few)."""
    try:
        match = resolve(url)
    except Resolver404:
        return []
    view = match.func
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    queryset = getattr(cls, "queryset", None)
    if queryset is None:
        return [1]
    return list(queryset.model._base_manager.order_by("-pk").values_list("pk", flat=True)[:MAX_OBJECTS]) or [1]


@pytest.fixture
def world(payments, logistics, store, personas, olga, mesh_redis):
    """One object of every governed model, owned by Payments, and the secrets carol must never see."""
    from governance.models import Application, RoutingRule
    from subscriptions.models import Subscription, SubscriptionChange
    from topics.models import Topic

    topic = Topic.objects.create(name="payments.secret", team=payments, store=store)
    token = APIToken(user=personas["alice"], description="alice-private-token")
    plain_token = token.generate()
    token.save()
    checkout = make_app_with_key(payments, "checkout", may_publish=[topic.name], description="checkout-private-key")
    app, key, plain_key = checkout.application, checkout.key, checkout.plain_key
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
    # Logistics' own: carol may change these, and the walk must survive her doing so
    shipping = Application.objects.create(name="shipping", team=logistics)
    make_topic(logistics, store, "logistics.parcels")
    Subscription.objects.create(topic=topic, application=shipping, webhook_url="https://example.com/s",
                                state=Subscription.ACTIVE)
    never_shown = [token.digest, plain_token, key.sha256, plain_key]  # not even to staff
    team_markers = [*never_shown, "alice-private-token", token.prefix, subscription.signing_secret]  # a viewer's
    return {"never_shown": never_shown, "team_markers": team_markers,
            "markers": [*team_markers, "checkout-private-key"],
            "topic": topic, "subscription": subscription}


def _requests(persona: str) -> Iterator[tuple[str, str, str]]:
    """(method, url, route) of the whole walk, deletions last."""
    for method in METHODS:
        for route in _urls():
            probe = _concrete(route, 1)
            if probe is None or probe.startswith("/static/"):
                continue
            if probe == "/logout/" and persona != "anonymous":
                continue  # signs the persona out: the rest of the walk would be anonymous's
            pks = _objects_for(probe) if "<" in route else [1]
            if persona == "anonymous" or method in ("head", "options"):
                pks = pks[:1]  # answered before any object is looked up: one is enough
            steps = _steps(probe) if "<slug:step>" in route else ["x"]
            for pk in pks:
                for step in steps:
                    yield method, _concrete(route, pk, step), route


def _send(client: Client, method: str, url: str):
    if method in ("get", "head", "options"):
        return getattr(client, method)(url)
    return getattr(client, method)(url, {}, content_type="application/json")


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_url_answers_5xx_and_nobody_changes_what_is_not_theirs(world, personas, olga, persona):
    user = {**personas, "olga": olga}.get(persona)
    client = Client(raise_request_exception=False)  # a view's exception is the 500 it would answer
    if user is not None:
        client.force_login(user)
    before = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    markers = {"sam": world["never_shown"], "dave": world["team_markers"]}.get(persona, world["markers"])
    walked, reviewed, failures = 0, set(), []
    for method, url, route in _requests(persona):
        response = _send(client, method, url)
        walked += 1
        if response.status_code >= 500:
            failures.append((method, url, response.status_code))
            continue
        if "<slug:step>" in route and url.endswith("/approve/"):
            reviewed.add(url.split("/")[1])
        body = response.content.decode(errors="replace")
        for marker in markers:
            assert marker not in body, (method, url, marker)
        if persona == "anonymous" and url not in PUBLIC:
            if url.startswith("/api/") or url in TOKEN_PAGES:
                assert response.status_code == 401, (method, url, response.status_code)
            else:
                assert response.status_code == 302 and response["Location"].startswith("/login/"), \
                    (method, url, response.status_code)
    assert not failures, failures
    assert walked > 1000
    assert {"subscriptions", "subscriptionchanges", "routingrules"} <= reviewed  # every workflow step was tried
    changed = AuditEntry.objects.filter(pk__gt=before)
    if persona == "anonymous":
        assert not changed.exists(), list(changed)
    elif persona != "sam":
        own_teams = list(user.memberships.values_list("team", flat=True))
        foreign = changed.exclude(team__in=own_teams).exclude(actor=user, team__isnull=True)
        assert not foreign.exists(), [(e, e.team) for e in foreign]


# Websockets


def _websocket_routes() -> list[str]:
    from meshadmin.routing import websocket_urlpatterns

    return sorted({route for route in _walk(websocket_urlpatterns) if route})


def _websocket_urls(world) -> list[str]:
    ids = sorted({1, world["topic"].pk, world["subscription"].pk})
    urls = []
    for route in _websocket_routes():
        if "<" not in route:
            urls.append("/" + route)
            continue
        for pk in ids:
            urls.append("/" + _PARAM.sub(lambda m, pk=pk: str(pk) if m.group(1) in ("int", None)
                                         else world["topic"].name, route))
    return urls


async def _handshake(path: str, cookie: str | None) -> tuple[dict, dict | None]:
    """The first thing the application answers to a websocket handshake on ``path``, and after an
    accept what it sends next (None when it sends nothing at once)."""
    from meshadmin.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    app = ApplicationCommunicator(application, {
        "type": "websocket", "path": path, "headers": headers, "subprotocols": [], "query_string": b"",
        "client": ("127.0.0.1", 5000), "server": ("localhost", 80),
    })
    await app.send_input({"type": "websocket.connect"})
    reply = await app.receive_output(5)  # re-raises what the application raised: a 500
    after = None
    if reply["type"] == "websocket.accept" and not await app.receive_nothing(0.2):
        after = await app.receive_output(5)
    await app.send_input({"type": "websocket.disconnect", "code": 1000})
    await app.wait(2)
    return reply, after


def _cookie(user) -> str | None:
    if user is None:
        return None
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


@pytest.mark.django_db(transaction=True)
async def test_every_websocket_route_accepts_or_refuses_cleanly_for_every_persona(world, personas, olga):
    users = {"anonymous": None, **{name: personas[name] for name in PERSONAS if name in personas}, "olga": olga}
    cookies = {name: await sync_to_async(_cookie)(user) for name, user in users.items()}
    urls = await sync_to_async(_websocket_urls)(world)
    assert "/ws/runtimes/" in urls
    for name, cookie in cookies.items():
        for url in [*urls, "/ws/no-such-route/", "/nothing/at/all"]:
            reply, after = await _handshake(url, cookie)
            assert reply["type"] in ("websocket.accept", "websocket.close"), (name, url, reply)
            if name == "anonymous":
                # Refused outright, or (the live views, so that a browser sees why) accepted only
                # to be closed at once as signed out, with nothing sent in between.
                refused = reply["type"] == "websocket.close" or after == {
                    "type": "websocket.close", "code": CLOSE_SIGNED_OUT, "reason": "sign in to watch"}
                assert refused, (url, reply, after)
            if url in ("/ws/no-such-route/", "/nothing/at/all"):
                assert reply == {"type": "websocket.close", "code": UNKNOWN_PATH}, (name, url, reply)
    await sync_to_async(connections.close_all)()



ODD_IDS = ("null,null", "true", "0", "-1", "1.5", "99999999999999999999", "%F0%9F%98%80")


def test_odd_ids_in_api_urls_answer_4xx_for_staff(world, personas):
    """``/api/v1/config-versions/null,null/rollback/`` and the like: staff pass every permission
    check, so whatever parses the id runs, and must answer 4xx."""
    client = Client(raise_request_exception=False)
    client.force_login(personas["sam"])
    failures = []
    for route in _urls():
        if not route.startswith("api/v1/") or "<pk>" not in route or "(" in route:
            continue
        for odd in ODD_IDS:
            url = "/" + route.replace("<pk>", odd)
            for method in METHODS:
                response = _send(client, method, url)
                if response.status_code >= 500:
                    failures.append((method, url, response.status_code))
                elif method == "get":
                    assert response.status_code in (400, 404, 405), (url, response.status_code)
    assert not failures, failures


#: The walk above takes every URL once, bare; these take their query parameters too.
FILTERED = ["/topology/?team=payments&prefix=payments.&application=checkout", "/topology/?team=logistics",
            "/api/v1/topology/", "/api/v1/topology/?team=payments", "/api/v1/topology/?team=logistics",
            "/api/v1/topology/?prefix=payments.", "/api/v1/topology/?application=shipping",
            "/api/v1/topology/?application=checkout&team=1", "/api/v1/topology/?team=%22%7D"]


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_topology_and_its_filters_answer_every_persona_with_what_they_may_see(world, personas, olga, persona):
    from subscriptions.models import Subscription

    assert {"topology/", "api/v1/topology/"} <= set(_urls())  # in the walk above too
    user = {**personas, "olga": olga}.get(persona)
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    markers = {"sam": world["never_shown"], "dave": world["team_markers"]}.get(persona, world["markers"])
    visible = set()
    if user is not None:
        visible = {f"subscription:{pk}" for pk in Subscription.objects.restrict(user).values_list("pk", flat=True)}
    for url in FILTERED:
        response = client.get(url)
        body = response.content.decode()
        for marker in markers:
            assert marker not in body, (url, marker)
        if user is None:
            assert response.status_code in (302, 401), (url, response.status_code)
        elif url.endswith("%22%7D"):
            assert response.status_code == 400 and set(response.json()) == {"team"}
        else:
            assert response.status_code == 200, (url, response.status_code)
            if url.startswith("/api/"):
                drawn = {node["id"] for node in response.json()["nodes"] if node["kind"] == "subscription"}
                assert drawn <= visible, (url, drawn - visible)
