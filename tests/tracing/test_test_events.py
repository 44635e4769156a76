"""Test events: answered as a runtime answers, stored through the store, audited, per persona.

The mesh is ``build_mesh()`` pushed for real (a published version in Redis): Payments' ``billing``
may publish ``orders.*`` (``orders.created`` needs a string ``order_id``; rule ``audit`` routes
copies to ``audit.orders``), everyone is denied publishing ``audit.*``, and Logistics' ``shipping``
has no publish rule. alice (owner) and bob (member) of Payments send as ``billing``; dave is a
viewer and has no application to send as; carol (Logistics) sends as ``shipping``.
"""

from __future__ import annotations

import orjson
import pytest
from django.urls import reverse

from governance.models import AccessRule, Application
from meshadmin.models import AuditEntry
from meshruntime import tapwire
from meshruntime.journey import JourneyRecorder
from rollout import push
from rollout.models import Runtime
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for
from topics.models import Topic
from tracing.test_events import SENDER_EXTENSION

pytestmark = pytest.mark.django_db


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"
    return redis_client


@pytest.fixture
def mesh(personas, mesh_redis):
    mesh = build_mesh()
    mesh.topics["orders.created"].example_event = {
        "specversion": "1.0", "id": "example", "type": "com.example.order.created", "source": "/shop",
        "subject": "o-1", "region": "eu", "data": {"order_id": "o-1"}}
    mesh.topics["orders.created"].save()
    assert push.push().outcome == "published"
    return mesh


def send(user, topic="orders.created", application="billing", **fields):
    body = {"application": application, "type": "com.example.test", "source": "/portal", **fields}
    return client_for(user).post(reverse("api:topic-test-events", args=[topic]), orjson.dumps(body),
                                 content_type="application/json")


def send_typed(user, data: bytes, topic="orders.created", application="billing"):
    """``send`` with the data's JSON text as typed: a dict could not hold every digit of its numbers."""
    body = orjson.dumps({"application": application, "type": "com.example.test", "source": "/portal"})
    return client_for(user).post(reverse("api:topic-test-events", args=[topic]), body[:-1] + b',"data":' + data + b"}",
                                 content_type="application/json")


def stored_bytes(redis_client, keys, topic: str) -> list[bytes]:
    return [f[b"event"] for _i, f in redis_client.xrange(keys.topic(topic))]


def stored(redis_client, keys, topic: str) -> list[dict]:
    return [orjson.loads(event) for event in stored_bytes(redis_client, keys, topic)]


def journey(redis_client, keys, event_id: str) -> list[dict]:
    return [orjson.loads(s) for s in redis_client.lrange(keys.journey(event_id), 0, -1)]


def sent_entries(topic):
    return AuditEntry.objects.filter(object_id=str(topic.pk), after__action="send test event").order_by("pk")


@pytest.mark.parametrize("persona", ["alice", "bob", "sam"])
def test_a_member_sends_as_their_teams_application_and_it_is_stored_routed_journeyed_and_audited(
        persona, personas, mesh, mesh_redis, keys):
    response = send(personas[persona], data={"order_id": "o-7"}, subject="o-7", extensions={"region": "eu"})
    assert response.status_code == 202, response.json()
    body = response.json()
    event_id = body["id"]
    [event] = stored(mesh_redis, keys, "orders.created")
    assert event["id"] == event_id and event["data"] == {"order_id": "o-7"} and event["region"] == "eu"
    assert event[SENDER_EXTENSION] == persona and event["subject"] == "o-7"
    assert [e["id"] for e in stored(mesh_redis, keys, "audit.orders")] == [event_id]  # the routing rule's copy
    assert body["copies"] == 1 and body["journey"] == f"/api/v1/events/{event_id}/journey/"
    steps = journey(mesh_redis, keys, event_id)
    assert [s["step"] for s in steps] == ["accepted", "routed", "stored", "stored"]
    assert steps[0]["runtime"] == "portal" and steps[0]["application"] == "billing"
    [entry] = sent_entries(mesh.topics["orders.created"])
    assert entry.actor == personas[persona] and entry.after["event_id"] == event_id
    assert entry.after["status"] == 202 and entry.after["application"] == "billing"


def test_someone_watching_the_topic_sees_the_test_event_arrive_and_its_routed_copy(alice, mesh, mesh_redis, keys):
    """The Live tab shows test events as it shows a runtime's: the portal taps what it stores."""
    mesh_redis.set(keys.tap_watch("orders.created"), "1", ex=60)
    mesh_redis.set(keys.tap_watch("audit.orders"), "1", ex=60)
    listener = mesh_redis.pubsub()
    listener.subscribe(keys.tap("orders.created"), keys.tap("audit.orders"))
    try:
        for _ in range(2):
            assert listener.get_message(timeout=10)["type"] == "subscribe"
        response = send(alice, data={"order_id": "o-8"})
        assert response.status_code == 202, response.json()
        seen = {}
        while len(seen) < 2:
            message = listener.get_message(timeout=10)
            assert message is not None, f"only {sorted(seen)} arrived"
            for record in tapwire.decode(message["data"]).items():
                seen[record["topic"]] = record
    finally:
        listener.close()
    original, copy = seen["orders.created"], seen["audit.orders"]
    assert original["event"]["id"] == copy["event"]["id"] == response.json()["id"]  # the stored events
    assert original["runtime"] == "portal" and original["outcome"] == "stored" and original["application"] == "billing"


def test_an_event_the_schema_refuses_is_400_with_the_path_and_never_stored(alice, mesh, mesh_redis, keys):
    response = send(alice, data={"order_id": 7})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "schema_mismatch" and body["path"] == "data.order_id"
    assert "7 is not of type 'string'" in body["message"]
    assert stored(mesh_redis, keys, "orders.created") == [] and stored(mesh_redis, keys, "audit.orders") == []
    [denied] = journey(mesh_redis, keys, body["event_id"])  # the refusal is in its journey
    assert denied["step"] == "denied" and denied["path"] == "data.order_id"
    assert sent_entries(mesh.topics["orders.created"]).get().after["path"] == "data.order_id"
    no_data = send(alice)
    assert no_data.status_code == 400 and no_data.json()["path"] == "data"


# Numbers a double cannot hold (the first is what 0.1 is as a double, written out), laid out as typed
TYPED = (b'{ "order_id": "o-1",\n  "amount": 0.1000000000000000055511151231257827,\n'
         b'  "count": 123456789012345678901234567890 }')


def test_the_data_is_sent_as_typed_every_digit_kept_and_the_schema_reads_it_exactly(alice, mesh, mesh_redis, keys):
    refused = send_typed(alice, b'{"order_id": 123456789012345678901234567890}')
    assert refused.status_code == 400 and refused.json()["path"] == "data.order_id"
    assert "123456789012345678901234567890 is not of type 'string'" in refused.json()["message"]
    response = send_typed(alice, TYPED)
    assert response.status_code == 202, response.content
    [event] = stored_bytes(mesh_redis, keys, "orders.created")
    assert event.endswith(b',"data":' + TYPED + b"}")  # what every subscriber is sent
    [copy] = stored_bytes(mesh_redis, keys, "audit.orders")
    assert b',"data":' + TYPED + b',"meshroute":' in copy
    assert b'"data":' + TYPED + b"}" in response.content  # the answer shows the event as stored


@pytest.mark.parametrize("data", [b'"\\ud800"', b'{"order_id": "\\udfff"}'])
def test_data_no_runtime_could_read_back_is_400_naming_the_data(alice, mesh, mesh_redis, keys, data):
    response = send_typed(alice, data)  # Python's JSON reads a lone surrogate; the mesh's reader does not
    assert response.status_code == 400, response.content
    assert response.json()["data"][0].startswith("Not JSON a runtime reads: ")
    assert stored_bytes(mesh_redis, keys, "orders.created") == []


def test_the_access_rules_decide_and_the_answer_names_the_rule(alice, carol, mesh, mesh_redis, keys):
    denied = send(alice, topic="audit.orders", data={"x": 1})
    assert denied.status_code == 403
    assert denied.json()["rule"] == mesh.rules["nobody-audit"].rule_id
    nobody = send(carol, application="shipping", data={"order_id": "o-1"})  # Logistics may not publish there
    assert nobody.status_code == 403 and nobody.json()["rule"] is None
    assert "no access rule allows it (default deny)" in nobody.json()["message"]
    assert stored(mesh_redis, keys, "orders.created") == []


def test_a_viewer_or_someone_without_an_application_may_not_send(dave, carol, client, mesh, mesh_redis):
    response = send(dave, data={"order_id": "o-1"})
    assert response.status_code == 403 and "You may send test events only as an application" in response.json()[
        "detail"]
    assert send(carol, application="billing").status_code == 400  # not her team's application
    assert "'billing' is not an application of a team you own or are a member of" in \
        send(carol, application="billing").json()["application"][0]
    assert client.post(reverse("api:topic-test-events", args=["orders.created"])).status_code == 401
    assert send(carol, topic="no.such.topic").status_code == 404
    assert not sent_entries(mesh.topics["orders.created"]).exists()


def test_what_is_not_published_yet_is_answered_as_a_runtime_would(alice, mesh, mesh_redis, payments):
    Application.objects.create(name="newcomer", team=payments)  # saved, not pushed
    response = send(alice, application="newcomer", data={"order_id": "o-1"})
    assert response.status_code == 409 and "not in the published configuration" in response.json()["message"]
    Topic.objects.create(name="orders.late", team=payments, store=mesh.store)
    late = send(alice, topic="orders.late", data={})
    assert late.status_code == 404 and late.json()["error"] == "unknown_topic"


def test_without_a_published_configuration_nothing_is_sent(alice, personas, mesh_redis):
    build_mesh()  # not pushed
    response = send(alice, data={"order_id": "o-1"})
    assert response.status_code == 503 and response.json()["error"] == "not_ready"


@pytest.mark.parametrize(("extensions", "message"), [
    ({"id": "mine"}, "id is set by the portal"),
    ({SENDER_EXTENSION: "someone"}, "meshsender is set by the portal"),
    ({"data": "replaced"}, "data is set by the portal or by a field of this form"),  # not the data typed
    ({"data_base64": "AAEC"}, "data_base64 is set by the portal"),
    ({"Region": "eu"}, "extension attribute name 'Region' must be lowercase ASCII letters and digits"),
    ({"ratio": 1.5}, "extension attribute 'ratio' must be a string, an integer or a boolean"),
])
def test_extensions_a_runtime_would_refuse_are_400_naming_them(alice, mesh, mesh_redis, extensions, message):
    response = send(alice, data={"order_id": "o-1"}, extensions=extensions)
    assert response.status_code == 400 and message in response.json()["extensions"][0]


def test_the_form_is_prefilled_from_the_example_and_answers_like_the_api(alice, dave, mesh, mesh_redis, keys):
    topic = mesh.topics["orders.created"]
    url = reverse("tracing:test_event", args=[topic.pk])
    alice_client = client_for(alice)
    page = alice_client.get(topic.get_absolute_url()).content.decode()
    assert f'href="{url}" data-testid="action-test-event">Send test event<' in page
    assert 'data-testid="action-test-event"' not in client_for(dave).get(topic.get_absolute_url()).content.decode()
    assert client_for(dave).get(url).status_code == 403
    form = alice_client.get(url).context["form"]
    assert form["type"].value() == "com.example.order.created" and form["subject"].value() == "o-1"
    assert orjson.loads(form["extensions"].value()) == {"region": "eu"}
    assert orjson.loads(form["data"].value()) == {"order_id": "o-1"}
    billing = mesh.apps["billing"].pk
    fields = {"application": billing, "type": "t.test", "source": "/portal", "subject": "", "extensions": "{}"}
    refused = alice_client.post(url, {**fields, "data": '{"order_id": 1}'})
    assert refused.status_code == 400 and 'data-testid="test-event-path">data.order_id<' in refused.content.decode()
    bad_json = alice_client.post(url, {**fields, "data": '{"order_id": '})
    assert bad_json.status_code == 400 and "Not JSON: Expecting value at line 1, column 14." in \
        bad_json.content.decode()
    sent = alice_client.post(url, {**fields, "data": '{"order_id": "o-9"}'})
    assert sent.status_code == 202
    event_id = stored(mesh_redis, keys, "orders.created")[0]["id"]
    assert f'href="/events/{event_id}/" data-testid="test-event-journey"' in sent.content.decode()


def test_the_form_sends_the_data_as_typed_every_digit_kept(alice, mesh, mesh_redis, keys):
    url = reverse("tracing:test_event", args=[mesh.topics["orders.created"].pk])
    fields = {"application": mesh.apps["billing"].pk, "type": "t.test", "source": "/portal", "subject": "",
              "extensions": "{}"}
    sent = client_for(alice).post(url, {**fields, "data": "\r\n" + TYPED.decode() + "\r\n"})
    assert sent.status_code == 202, sent.context["form"].errors
    [event] = stored_bytes(mesh_redis, keys, "orders.created")
    assert event.endswith(b',"data":' + TYPED + b"}")  # the whitespace around it is not part of it


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_the_form_refuses_what_json_has_no_number_for(alice, mesh, mesh_redis, keys, value):
    url = reverse("tracing:test_event", args=[mesh.topics["orders.created"].pk])
    fields = {"application": mesh.apps["billing"].pk, "type": "t.test", "source": "/portal", "subject": "",
              "extensions": "{}"}
    refused = client_for(alice).post(url, {**fields, "data": f'{{"order_id": "o-1", "amount": {value}}}'})
    assert refused.status_code == 400
    assert refused.context["form"].errors["data"] == [
        f"Not JSON: {value} is not a JSON value (JSON has no NaN or Infinity)."]
    assert stored_bytes(mesh_redis, keys, "orders.created") == []


def test_the_api_schema_documents_the_test_events_and_their_answers(carol):
    schema = client_for(carol).get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/topics/{name}/test-events/"]["post"]
    assert set(operation["responses"]) == {"202", "400", "401", "403", "404", "409", "413", "429", "503"}
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("TestEventRequest")


def test_the_latest_published_configuration_decides_not_the_unpublished_database(carol, mesh, mesh_redis,
                                                                               logistics):
    rule = AccessRule.objects.create(team=mesh.payments, principal_kind=AccessRule.TEAM, principal_team=logistics,
                                     topic_pattern="orders.created", publish=True)
    assert send(carol, application="shipping", data={"order_id": "o-1"}).status_code == 403  # saved, not pushed
    assert push.push().outcome == "published"
    assert send(carol, application="shipping", data={"order_id": "o-1"}).status_code == 202
    rule.delete()
    assert push.push().outcome == "published"
    assert send(carol, application="shipping", data={"order_id": "o-1"}).status_code == 403


def test_the_id_is_one_every_runtime_records_the_journey_of(alice, mesh, mesh_redis):
    Runtime.objects.create(runtime_id="rt-sparse", journey_sample_rate=0.01, journey_ttl_seconds=3600)
    Runtime.objects.create(runtime_id="rt-off", journey_sample_rate=0.0, journey_ttl_seconds=3600)  # records none
    event_ids = [send(alice, data={"order_id": f"o-{i}"}).json()["id"] for i in range(3)]
    sparse = JourneyRecorder("rt-sparse", sample_rate=0.01)
    assert all(sparse.sampled(event_id) for event_id in event_ids)  # 1 in 100 by chance: 1 in a million
    assert len(set(event_ids)) == 3
