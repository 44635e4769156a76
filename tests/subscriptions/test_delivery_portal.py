"""The Delivery tab of a subscription: state, dead letters, redeliver and skip to now, and who may;
and the same in the API (``/api/v1/subscriptions/{id}/delivery/``, ``…/dead-letters/``,
``…/redeliver/``, ``…/skip-to-now/``), where the topic's side is told why it may not act (403).

As in the workflow tests, the subscription is Logistics' application ``tracker`` on Payments' topic
``orders.created``: carol (member of Logistics) is the subscriber's side and may act; alice and
bob (Payments) see the tab but may not act (404); dave (viewer of Payments) sees it; erin is in
neither team (404 everywhere); sam is staff. Redis is the real one, under this test's prefix.
"""

from __future__ import annotations

import html
import json
import re
import time
from decimal import Decimal

import orjson
import pytest
from django.urls import reverse

from meshadmin.models import AuditEntry
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

MAY_ACT = ("carol", "sam")
MAY_NOT_ACT = ("alice", "bob", "dave", "erin")  # see the tab (but erin) and get 404 on actions


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    return redis_client


@pytest.fixture
def sub(payments, logistics, store, mesh_redis, key_prefix) -> Subscription:
    topic = make_topic(payments, store, "orders.created")
    subscription = make_subscription(make_app(logistics, "tracker"), topic, Subscription.ACTIVE)
    key = f"{key_prefix}topic:orders.created"
    mesh_redis.xgroup_create(key, subscription.subscription_id, id="0", mkstream=True)
    for i in range(7):
        mesh_redis.xadd(key, {"event": event(f"new-{i}")})
    return subscription


def event(event_id: str) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": event_id, "source": "/shop", "type": "com.example.order",
                         "data": {"n": event_id}})


def dead_letter(redis_client, key_prefix: str, sub: Subscription, event_id: str, *, status: str = "400",
                reason: str = "rejected: HTTP 400: unknown order", attempts: int = 1,
                stored: bytes | None = None) -> str:
    """A dead letter as a runtime writes it (meshruntime.store: fields event, reason, status, ...);
    ``stored``: the event as stored, when not :func:`event`'s."""
    return redis_client.xadd(f"{key_prefix}dlq:{sub.subscription_id}", {
        "event": stored or event(event_id), "reason": reason, "status": status, "attempts": str(attempts),
        "source_id": "1-0", "at": str(int(time.time() * 1000))}).decode()


def delivery_url(sub: Subscription, name: str = "subscription_delivery") -> str:
    return reverse(f"subscriptions:{name}", args=[sub.pk])


def redelivered(redis_client, key_prefix: str, sub: Subscription) -> list[dict]:
    return [{k.decode(): v for k, v in fields.items()}
            for _id, fields in redis_client.xrange(f"{key_prefix}redeliver:{sub.subscription_id}")]


def actions(sub: Subscription):
    return AuditEntry.objects.filter(object_id=str(sub.pk), after__action__isnull=False)


# -- the tab -----------------------------------------------------------------------------------


def test_the_tab_shows_lag_pending_rate_totals_last_error_and_dead_letters(
        people, sub, mesh_redis, key_prefix):
    for i in range(3):
        dead_letter(mesh_redis, key_prefix, sub, f"dead-{i}")
    key = f"{key_prefix}topic:orders.created"
    mesh_redis.xreadgroup(sub.subscription_id, "rt-1", {key: ">"}, count=2)  # 2 in flight, 5 to read
    minute = int(time.time() // 60)
    mesh_redis.hset(f"{key_prefix}delivery:{sub.subscription_id}", mapping={
        "delivered": 1234, "dead_lettered": 3, "retries": 17, "filtered": 2,
        "last_error": "exhausted: 8 attempts, the last: HTTP 503: busy", "last_error_status": 503,
        "last_error_at": int(time.time() * 1000), "last_delivered_at": int(time.time() * 1000)})
    mesh_redis.set(f"{key_prefix}delivery:{sub.subscription_id}:m:{minute}", 90)
    response = client_for(people["dave"]).get(delivery_url(sub))
    assert response.status_code == 200
    page = response.content.decode()
    state = response.context["state"]
    assert (state.lag, state.pending, state.consumers, state.dead_letters) == (5, 2, 1, 3)
    assert state.delivered == 1234 and state.rate_per_second > 0
    assert 'data-testid="lag">5 ' in page and 'data-testid="pending">2 ' in page
    assert "exhausted: 8 attempts, the last: HTTP 503: busy" in page
    assert page.count('data-testid="dead-letter"') == 3 and "rejected: HTTP 400: unknown order" in page
    assert "dead-2" in page and page.index("dead-2") < page.index("dead-0")  # newest first
    assert 'data-testid="redeliver-one"' not in page and 'data-testid="skip-to-now"' not in page  # dave views


def test_the_subscriber_side_gets_the_buttons(people, sub, mesh_redis, key_prefix):
    dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    page = client_for(people["carol"]).get(delivery_url(sub)).content.decode()
    for testid in ("redeliver-one", "redeliver-all", "skip-to-now"):
        assert f'data-testid="{testid}"' in page


@pytest.mark.parametrize("who", ["alice", "bob", "carol", "dave", "sam"])
def test_both_teams_see_the_tab(people, sub, who):
    assert client_for(people[who]).get(delivery_url(sub)).status_code == 200


def test_others_get_404_and_strangers_the_login_page(people, sub, client):
    assert client_for(people["erin"]).get(delivery_url(sub)).status_code == 404
    response = client.get(delivery_url(sub))
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_overview_links_to_the_tab(people, sub):
    page = client_for(people["carol"]).get(sub.get_absolute_url()).content.decode()
    assert f'href="{delivery_url(sub)}"' in page and 'data-testid="tab-delivery"' in page


def test_dead_letters_are_paged(people, sub, mesh_redis, key_prefix):
    for i in range(55):
        dead_letter(mesh_redis, key_prefix, sub, f"dead-{i}")
    carol = client_for(people["carol"])
    first = carol.get(delivery_url(sub))
    assert len(first.context["letters"]) == 50 and first.context["next_before"]
    older = carol.get(delivery_url(sub), {"before": first.context["next_before"]})
    assert [letter.event_id for letter, _event in older.context["letters"]] == [f"dead-{i}" for i in range(4, -1, -1)]
    assert older.context["next_before"] is None
    assert carol.get(delivery_url(sub), {"before": "'; DROP"}).status_code == 200  # ignored, not an error


def test_a_dead_letter_is_shown_with_every_digit_it_was_published_with(people, sub, mesh_redis, key_prefix):
    stored = (b'{"specversion":"1.0","id":"big-1","source":"/shop","type":"com.example.order",'
              b'"datacontenttype":"application/json","data":{"n":12345678901234567890123,'
              b'"ratio":0.1000000000000000055511151231257827,"tiny":1E-400,"items":[],"nested":{"at":[1.50]}}}')
    dead_letter(mesh_redis, key_prefix, sub, "big-1", stored=stored)
    page = client_for(people["dave"]).get(delivery_url(sub)).content.decode()
    shown = html.unescape(re.search(r'data-testid="dead-letter-event">(.*?)</pre>', page, re.S).group(1))
    assert '\n  "data": {\n    "n": 12345678901234567890123,\n' \
           '    "ratio": 0.1000000000000000055511151231257827,' in shown
    assert "".join(shown.split()) == stored.decode()  # indented, and otherwise as stored


def test_a_subscription_no_runtime_has_started_says_so(people, payments, logistics, store, mesh_redis):
    topic = make_topic(payments, store, "orders.paid")
    waiting = make_subscription(make_app(logistics, "ledger"), topic, Subscription.ACTIVE)
    response = client_for(people["carol"]).get(delivery_url(waiting))
    assert response.status_code == 200 and not response.context["state"].group_exists
    assert "not created yet" in response.content.decode()


def test_the_tab_says_when_redis_is_unreachable(people, sub, settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    response = client_for(people["carol"]).get(delivery_url(sub))
    assert response.status_code == 200
    assert 'data-testid="delivery-unavailable"' in response.content.decode()


# -- redeliver --------------------------------------------------------------------------------


@pytest.mark.parametrize("who", MAY_ACT)
def test_redeliver_one_puts_it_back_for_this_subscription_only_and_is_audited(
        people, sub, mesh_redis, key_prefix, who):
    first = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    dead_letter(mesh_redis, key_prefix, sub, "dead-1")
    response = client_for(people[who]).post(delivery_url(sub, "subscription_redeliver"), {"dlq_id": first})
    assert response.status_code == 302 and response["Location"] == delivery_url(sub)
    (back,) = redelivered(mesh_redis, key_prefix, sub)
    assert back["event"] == event("dead-0") and back["by"] == who.encode() and back["dlq_id"] == first.encode()
    remaining = mesh_redis.xrange(f"{key_prefix}dlq:{sub.subscription_id}")
    assert [orjson.loads(f[b"event"])["id"] for _i, f in remaining] == ["dead-1"]
    (entry,) = actions(sub)
    assert entry.actor == people[who] and entry.action == AuditEntry.UPDATE and entry.team == sub.application.team
    assert entry.after == {"action": "redeliver dead letters", "dead_letters": [first], "redelivered": 1}


def test_redeliver_all(people, sub, mesh_redis, key_prefix):
    for i in range(5):
        dead_letter(mesh_redis, key_prefix, sub, f"dead-{i}")
    client_for(people["carol"]).post(delivery_url(sub, "subscription_redeliver"), {"all": "1"})
    assert [orjson.loads(r["event"])["id"] for r in redelivered(mesh_redis, key_prefix, sub)] == [
        f"dead-{i}" for i in range(5)]
    assert mesh_redis.xlen(f"{key_prefix}dlq:{sub.subscription_id}") == 0
    assert actions(sub).get().after == {"action": "redeliver dead letters", "dead_letters": "all", "redelivered": 5}


@pytest.mark.parametrize("who", MAY_NOT_ACT)
def test_only_the_subscriber_side_may_redeliver(people, sub, mesh_redis, key_prefix, who):
    letter = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    for data in ({"dlq_id": letter}, {"all": "1"}):
        response = client_for(people[who]).post(delivery_url(sub, "subscription_redeliver"), data)
        assert response.status_code == 404
    assert redelivered(mesh_redis, key_prefix, sub) == []
    assert not actions(sub).exists()


@pytest.mark.parametrize("data", [{}, {"dlq_id": "abc"}, {"dlq_id": "1-0", "all": "1"}])
def test_redeliver_needs_ids_or_all(people, sub, data):
    response = client_for(people["carol"]).post(delivery_url(sub, "subscription_redeliver"), data)
    assert response.status_code == 400
    assert not actions(sub).exists()


def test_redelivering_a_dead_letter_already_put_back_does_nothing_twice(people, sub, mesh_redis, key_prefix):
    letter = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    carol = client_for(people["carol"])
    carol.post(delivery_url(sub, "subscription_redeliver"), {"dlq_id": letter})
    response = carol.post(delivery_url(sub, "subscription_redeliver"), {"dlq_id": letter}, follow=True)
    assert "Nothing to redeliver" in response.content.decode()
    assert len(redelivered(mesh_redis, key_prefix, sub)) == 1


# -- skip to now ------------------------------------------------------------------------------


def test_skip_to_now_asks_first_then_moves_the_group_and_is_audited(people, sub, mesh_redis, key_prefix):
    key = f"{key_prefix}topic:orders.created"
    mesh_redis.xreadgroup(sub.subscription_id, "rt-1", {key: ">"}, count=2)
    carol = client_for(people["carol"])
    confirm = carol.get(delivery_url(sub, "subscription_skip_to_now"))
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert 'data-testid="confirm-skip"' in page and "5 events" in page and "the 2 read" in page
    assert carol.post(delivery_url(sub, "subscription_skip_to_now")).status_code == 400  # not confirmed
    assert not actions(sub).exists()
    response = carol.post(delivery_url(sub, "subscription_skip_to_now"), {"confirm": "yes"})
    assert response.status_code == 302
    group = next(g for g in mesh_redis.xinfo_groups(key) if g["name"].decode() == sub.subscription_id)
    assert group["pending"] == 0 and group["last-delivered-id"] == mesh_redis.xinfo_stream(key)["last-generated-id"]
    assert actions(sub).get().after == {"action": "skip to now", "skipped": 5, "acknowledged": 2}


@pytest.mark.parametrize("who", MAY_NOT_ACT)
def test_only_the_subscriber_side_may_skip_to_now(people, sub, mesh_redis, key_prefix, who):
    client = client_for(people[who])
    assert client.get(delivery_url(sub, "subscription_skip_to_now")).status_code == 404
    assert client.post(delivery_url(sub, "subscription_skip_to_now"), {"confirm": "yes"}).status_code == 404
    key = f"{key_prefix}topic:orders.created"
    group = next(g for g in mesh_redis.xinfo_groups(key) if g["name"].decode() == sub.subscription_id)
    assert group["last-delivered-id"] == b"0-0"
    assert not actions(sub).exists()


@pytest.mark.parametrize("state", [Subscription.REVOKED, Subscription.REQUESTED, Subscription.REJECTED])
def test_a_subscription_no_runtime_delivers_refuses_the_actions(people, sub, mesh_redis, key_prefix, state):
    letter = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    Subscription.objects.filter(pk=sub.pk).update(state=state)
    carol = client_for(people["carol"])
    assert 'data-testid="redeliver-one"' not in carol.get(delivery_url(sub)).content.decode()
    assert carol.post(delivery_url(sub, "subscription_redeliver"), {"dlq_id": letter}).status_code == 409
    assert carol.get(delivery_url(sub, "subscription_skip_to_now")).status_code == 409
    assert carol.post(delivery_url(sub, "subscription_skip_to_now"), {"confirm": "yes"}).status_code == 409
    assert redelivered(mesh_redis, key_prefix, sub) == [] and not actions(sub).exists()


# -- the API ----------------------------------------------------------------------------------

SEE_BUT_MAY_NOT_ACT = ("alice", "bob", "dave")


def api_url(sub: Subscription, action: str) -> str:
    return f"/api/v1/subscriptions/{sub.pk}/{action}/"


def post_json(client, target: str, data: dict):
    return client.post(target, json.dumps(data), content_type="application/json")


@pytest.mark.parametrize("who", ["alice", "bob", "carol", "dave", "sam"])
def test_api_both_teams_read_the_delivery_state(people, sub, mesh_redis, key_prefix, who):
    dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    mesh_redis.xreadgroup(sub.subscription_id, "rt-1", {f"{key_prefix}topic:orders.created": ">"}, count=2)
    mesh_redis.hset(f"{key_prefix}delivery:{sub.subscription_id}", mapping={
        "delivered": 12, "last_error": "HTTP 503: busy", "last_error_status": 503})
    response = client_for(people[who]).get(api_url(sub, "delivery"))
    assert response.status_code == 200
    state = response.json()
    assert (state["group_exists"], state["lag"], state["pending"], state["dead_letters"]) == (True, 5, 2, 1)
    assert (state["delivered"], state["last_error"], state["last_error_status"]) == (12, "HTTP 503: busy", 503)
    assert isinstance(state["rate_per_second"], float)


def test_api_strangers_get_404_and_anonymous_401(people, sub, client):
    for action in ("delivery", "dead-letters"):
        assert client_for(people["erin"]).get(api_url(sub, action)).status_code == 404
        assert client.get(api_url(sub, action)).status_code == 401


def test_api_dead_letters_are_listed_newest_first_and_paged(people, sub, mesh_redis, key_prefix):
    for i in range(5):
        dead_letter(mesh_redis, key_prefix, sub, f"dead-{i}")
    dave = client_for(people["dave"])
    first = dave.get(api_url(sub, "dead-letters"), {"limit": 3}).json()
    assert [letter["event_id"] for letter in first["results"]] == ["dead-4", "dead-3", "dead-2"]
    letter = first["results"][0]
    assert letter["reason"] == "rejected: HTTP 400: unknown order" and letter["status"] == 400
    assert letter["event"]["data"] == {"n": "dead-4"} and letter["reason_code"] == "rejected"
    rest = dave.get(api_url(sub, "dead-letters"), {"limit": 3, "before": first["next_before"]}).json()
    assert [letter["event_id"] for letter in rest["results"]] == ["dead-1", "dead-0"]
    assert rest["next_before"] is None
    response = dave.get(api_url(sub, "dead-letters"), {"before": "'; DROP"})
    assert response.status_code == 400 and "before" in response.json()


#: An event whose numbers Python's float and orjson cannot hold: more digits than a double keeps,
#: a whole number beyond 64 bits, one beyond a double's range, and digits a double drops (1.50).
EXACT = (b'{"specversion":"1.0","id":"big-1","source":"/shop","type":"com.example.order",'
         b'"datacontenttype":"application/json","data":{"ratio":0.1000000000000000055511151231257827,'
         b'"n":12345678901234567890123,"huge":1' + b"0" * 400 + b',"tiny":1E-400,"nested":{"at":[1.50]}}}')


def strict_json(text: bytes):
    """``text`` read as JSON with every number exact, refusing NaN and Infinity."""
    return json.loads(text, parse_float=Decimal, parse_constant=lambda name: pytest.fail(f"{name} in the answer"))


def test_api_a_dead_letter_comes_back_as_it_was_stored_every_digit_and_member_order(
        people, sub, mesh_redis, key_prefix):
    dead_letter(mesh_redis, key_prefix, sub, "big-1", stored=EXACT)
    response = client_for(people["dave"]).get(api_url(sub, "dead-letters"))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert b'"event":' + EXACT + b"}]" in response.content  # the stored text itself, embedded
    [letter] = strict_json(response.content)["results"]
    assert letter["event"]["data"]["ratio"] == Decimal("0.1000000000000000055511151231257827")
    assert letter["event"]["data"]["n"] == 12345678901234567890123 and letter["event"]["data"]["huge"] == 10 ** 400
    assert letter["event_id"] == "big-1" and letter["status"] == 400


def test_api_a_dead_letter_that_is_not_a_json_object_comes_back_as_its_text(people, sub, mesh_redis, key_prefix):
    stored = {"array": b'[{"id":"a-1"}]', "nan": b'{"id":"nan-1","data":{"x":NaN}}',
              "infinity": b'{"id":"inf-1","data":{"x":-Infinity}}', "cut": b'{"id":"cut-1","data":{"x":1',
              "latin-1": b'{"id":"l-1","data":"caf\xe9"}'}
    for name, text in stored.items():
        dead_letter(mesh_redis, key_prefix, sub, name, stored=text)
    response = client_for(people["dave"]).get(api_url(sub, "dead-letters"))
    events = [letter["event"] for letter in strict_json(response.content)["results"]]
    assert events == [text.decode("utf-8", "replace") for text in reversed(stored.values())]


def test_api_dead_letters_keep_their_digits_indented_and_in_the_browsable_api(people, sub, mesh_redis, key_prefix):
    dead_letter(mesh_redis, key_prefix, sub, "big-1", stored=EXACT)
    dave = client_for(people["dave"])
    indented = dave.get(api_url(sub, "dead-letters"), HTTP_ACCEPT="application/json; indent=4")
    assert indented.content.startswith(b'{\n ') and EXACT in indented.content  # the event as stored, not re-laid
    assert strict_json(indented.content) == strict_json(dave.get(api_url(sub, "dead-letters")).content)
    page = dave.get(api_url(sub, "dead-letters"), HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert html.escape(EXACT.decode(), quote=True) in page.content.decode()
    assert dave.get(api_url(sub, "dead-letters"), {"format": "json"}).content == \
        dave.get(api_url(sub, "dead-letters")).content


@pytest.mark.parametrize("who", MAY_ACT)
def test_api_redeliver_one_or_all_is_audited(people, sub, mesh_redis, key_prefix, who):
    first = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    dead_letter(mesh_redis, key_prefix, sub, "dead-1")
    client = client_for(people[who])
    response = post_json(client, api_url(sub, "redeliver"), {"ids": [first]})
    assert response.status_code == 200 and response.json() == {"redelivered": 1}
    assert [orjson.loads(r["event"])["id"] for r in redelivered(mesh_redis, key_prefix, sub)] == ["dead-0"]
    assert post_json(client, api_url(sub, "redeliver"), {"all": True}).json() == {"redelivered": 1}
    assert [entry.after["dead_letters"] for entry in actions(sub).order_by("pk")] == [[first], "all"]
    assert {entry.actor for entry in actions(sub)} == {people[who]}


@pytest.mark.parametrize("body", [{}, {"ids": ["abc"]}, {"ids": ["1-0"], "all": True}, {"ids": []}, {"all": False}])
def test_api_redeliver_needs_ids_or_all(people, sub, body):
    response = post_json(client_for(people["carol"]), api_url(sub, "redeliver"), body)
    assert response.status_code == 400, response.content
    assert not actions(sub).exists()


@pytest.mark.parametrize("who", SEE_BUT_MAY_NOT_ACT)
def test_api_the_topic_side_is_told_why_it_may_not_act(people, sub, mesh_redis, key_prefix, who):
    letter = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    client = client_for(people[who])
    for action, body in (("redeliver", {"ids": [letter]}), ("skip-to-now", {"confirm": True})):
        response = post_json(client, api_url(sub, action), body)
        assert response.status_code == 403
        assert "team Logistics" in response.json()["detail"]
    assert redelivered(mesh_redis, key_prefix, sub) == [] and not actions(sub).exists()


def test_api_strangers_may_not_act_and_do_not_learn_it_exists(people, sub, mesh_redis, key_prefix):
    letter = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    erin = client_for(people["erin"])
    assert post_json(erin, api_url(sub, "redeliver"), {"ids": [letter]}).status_code == 404
    assert post_json(erin, api_url(sub, "skip-to-now"), {"confirm": True}).status_code == 404


def test_api_skip_to_now_needs_confirmation_and_is_audited(people, sub, mesh_redis, key_prefix):
    key = f"{key_prefix}topic:orders.created"
    mesh_redis.xreadgroup(sub.subscription_id, "rt-1", {key: ">"}, count=2)
    carol = client_for(people["carol"])
    for body in ({}, {"confirm": False}):
        response = post_json(carol, api_url(sub, "skip-to-now"), body)
        assert response.status_code == 400 and "confirm" in response.json()
    response = post_json(carol, api_url(sub, "skip-to-now"), {"confirm": True})
    assert response.status_code == 200 and response.json() == {"skipped": 5, "acknowledged": 2}
    assert actions(sub).get().after == {"action": "skip to now", "skipped": 5, "acknowledged": 2}


@pytest.mark.parametrize("state", [Subscription.REVOKED, Subscription.REQUESTED])
def test_api_a_subscription_no_runtime_delivers_answers_409(people, sub, mesh_redis, key_prefix, state):
    letter = dead_letter(mesh_redis, key_prefix, sub, "dead-0")
    Subscription.objects.filter(pk=sub.pk).update(state=state)
    carol = client_for(people["carol"])
    for action, body in (("redeliver", {"ids": [letter]}), ("skip-to-now", {"confirm": True})):
        response = post_json(carol, api_url(sub, action), body)
        assert response.status_code == 409
        assert "no runtime delivers it" in response.json()["detail"]
    assert redelivered(mesh_redis, key_prefix, sub) == []
    assert not AuditEntry.objects.filter(object_id=str(sub.pk), after__action__isnull=False).exists()


def test_api_an_unreachable_redis_is_503_with_the_reason(people, sub, settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    response = client_for(people["carol"]).get(api_url(sub, "delivery"))
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
