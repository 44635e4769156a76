"""The pages of the live views, per persona: the Live tab of topics and subscriptions, the Refused tab
of applications, the refusals panel of the home page; and every websocket route walked as every
persona (the URL walk of tests/meshadmin/test_url_walk.py covers the pages' HTTP side)."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from django.urls import URLPattern, reverse

from governance.models import Application
from meshadmin.routing import websocket_urlpatterns
from subscriptions.models import Subscription
from topics.models import Topic
from tracing.consumers import CLOSE_NOT_FOUND, CLOSE_SIGNED_OUT

from .conftest import Closed, Socket, session_cookie

PAYLOAD = {"alice": True, "bob": True, "dave": True, "sam": True, "carol": False}


@pytest.fixture
def world(payments, logistics, store):
    topic = Topic.objects.create(name="orders.created", team=payments, store=store)
    checkout = Application.objects.create(name="checkout", team=payments)
    shipping = Application.objects.create(name="shipping", team=logistics)
    subscription = Subscription.objects.create(topic=topic, application=checkout, state=Subscription.ACTIVE,
                                               webhook_url="http://127.0.0.1:9/hook",
                                               filters=[{"prefix": {"type": "com.example."}}])
    return {"topic": topic, "checkout": checkout, "shipping": shipping, "subscription": subscription}


def tail_config(response) -> dict:
    page = response.content.decode()
    start = page.index('<script id="tail-config" type="application/json">') + len(
        '<script id="tail-config" type="application/json">')
    return json.loads(page[start:page.index("</script>", start)])


@pytest.mark.django_db
@pytest.mark.parametrize("persona", sorted(PAYLOAD))
def test_the_live_tab_of_a_topic_says_what_each_persona_sees(world, as_user, persona):
    topic = world["topic"]
    overview = as_user(persona).get(topic.get_absolute_url()).content.decode()
    url = reverse("tracing:topic_live", args=[topic.pk])
    assert f'href="{url}" data-testid="tab-live">Live<' in overview
    response = as_user(persona).get(url)
    assert response.status_code == 200
    config = tail_config(response)
    assert config["payload"] is PAYLOAD[persona] and config["topic"] == "orders.created"
    assert config["socket"] == f"/ws/tracing/topics/{topic.pk}/tail/" and config["journey_url"] == "/events/__id__/"
    page = response.content.decode()
    assert 'data-testid="tail"' in page and 'data-testid="refusals-panel"' in page and "<script>" not in page
    assert ('data-testid="tail-masked" hidden' in page) is PAYLOAD[persona]


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_sign_in(world, client):
    for url in (reverse("tracing:topic_live", args=[world["topic"].pk]),
                reverse("tracing:application_refused", args=[world["checkout"].pk]),
                reverse("tracing:subscription_live", args=[world["subscription"].pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_a_subscription_shows_what_it_would_get(world, as_user):
    subscription = world["subscription"]
    response = as_user("bob").get(reverse("tracing:subscription_live", args=[subscription.pk]))
    assert tail_config(response)["filters"] == [{"prefix": {"type": "com.example."}}]
    assert f"that {subscription.subscription_id} would receive" in response.content.decode()
    # the same from the topic's tab, and a subscription one may not see is said, not used
    topic_live = reverse("tracing:topic_live", args=[world["topic"].pk])
    response = as_user("bob").get(f"{topic_live}?subscription={subscription.pk}")
    assert tail_config(response)["filters"] == [{"prefix": {"type": "com.example."}}]
    response = as_user("carol").get(f"{topic_live}?subscription={subscription.pk}")
    assert tail_config(response)["filters"] == []
    assert f"no subscription &#x27;{subscription.pk}&#x27; to orders.created that you may see" in \
        response.content.decode()
    assert as_user("carol").get(reverse("tracing:subscription_live", args=[subscription.pk])).status_code == 404
    response = as_user("bob").get(f"{topic_live}?filters=[{{oops&q=o-1")
    assert "filters: not valid JSON" in response.content.decode() and tail_config(response)["text"] == "o-1"


@pytest.mark.django_db
@pytest.mark.parametrize("persona", sorted(PAYLOAD))
def test_the_refused_tab_and_the_home_page_carry_a_refusals_panel(world, as_user, persona):
    app = world["checkout"]
    response = as_user(persona).get(reverse("tracing:application_refused", args=[app.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert f'data-scope="application" data-pk="{app.pk}"' in page and 'data-testid="tab-refused"' in page
    home = as_user(persona).get("/").content.decode()
    assert 'data-testid="refusals-panel"' in home and 'data-scope="all"' in home


# -- every websocket route, as every persona -----------------------------------------------------


def _routes():
    for entry in websocket_urlpatterns:
        assert isinstance(entry, URLPattern)
        yield str(entry.pattern), entry.default_args


def _path(route: str, pk: int) -> str:
    return "/" + route.replace("<int:pk>", str(pk))


async def _outcome(path: str, session: str | None) -> str:
    """"open" (accepted, and it said something or stayed open), or the close code, or "refused"."""
    socket = Socket(path, session)
    communicator = socket.communicator
    await communicator.send_input({"type": "websocket.connect"})
    answer = await communicator.receive_output(10)
    try:
        if answer["type"] == "websocket.close":
            return "refused"  # before accept: the handshake fails
        try:
            await socket.next(10)
        except Closed as closed:
            return closed.code
        return "open"
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_every_websocket_refuses_anonymous_and_opens_to_who_may_see(world, personas, mesh_prefix):
    pks = {"topic": world["topic"].pk, "application": world["checkout"].pk}
    walked = 0
    for route, defaults in _routes():
        pk = pks.get(defaults.get("kind", "topic"), 0)
        path = _path(route, pk)
        anonymous = await _outcome(path, None)
        assert anonymous in ("refused", CLOSE_SIGNED_OUT), (path, anonymous)
        if "<int:pk>" in route:
            bob = await database_sync_to_async(session_cookie)(personas["bob"])
            missing = await _outcome(_path(route, 999999), bob)
            assert missing in ("refused", CLOSE_NOT_FOUND), (route, missing)
        for name, user in personas.items():
            if not route.startswith("ws/tracing/"):
                continue  # other apps' sockets have their own rules (rollout: staff and members)
            outcome = await _outcome(path, await database_sync_to_async(session_cookie)(user))
            assert outcome == "open", (path, name, outcome)
            walked += 1
    assert walked == len(personas) * 4
    await database_sync_to_async(connections.close_all)()  # the consumers' database thread
