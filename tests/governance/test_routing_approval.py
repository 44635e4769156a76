"""A routing rule that reads another team's topic needs that team's approval, like a subscription.

The scene: Payments (alice owner, bob member, dave viewer) wants a copy of Logistics' topic
``parcels.shipped`` in its own ``payments.parcels``. carol (member of Logistics) is the source
side and decides; erin (owner of Compliance) is in neither team; sam is staff. Until Logistics
approves, the rule is not compiled: the document, the simulator, the validation page, the API
and a real runtime all agree that it copies nothing.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import redis
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from governance.models import AccessRule, RoutingRule
from governance.rules import compiled_routing_rules
from governance.simulator import simulate
from governance.validation import all_findings
from meshadmin.models import AuditEntry, Membership
from meshruntime.app import Runtime, Settings
from rollout import push
from rollout.compiler import compile_mesh_config
from tests.portal_support.factories import make_app, make_app_with_key, make_topic
from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture: this test's key prefix and queue
from tests.portal_support.personas import client_for, make_member
from tests.portal_support.waiting import Loop

pytestmark = pytest.mark.django_db

EVERYONE = ("alice", "bob", "carol", "dave", "erin", "sam")
SOURCE_SIDE = ("carol", "sam")  # may approve, reject and revoke


@pytest.fixture
def scene(payments, logistics, store, people):
    return {
        "source": make_topic(logistics, store, "parcels.shipped"),
        "target": make_topic(payments, store, "payments.parcels"),
        "own": make_topic(payments, store, "payments.orders"),
    }


def rule_data(scene, source="parcels.shipped", **extra):
    return {"team": scene["target"].team_id, "source_pattern": source, "targets": [scene["target"].pk],
            "filters": "[]", "enabled": "on", "order": 10, "description": "parcels for billing", **extra}


def create_by_page(user, data):
    return client_for(user).post(reverse("governance:routingrule_add"), data)


def create_by_api(user, data):
    body = {**data, "filters": json.loads(data["filters"]), "enabled": True}
    return client_for(user).post(reverse("api:routingrule-list"), body, content_type="application/json")


def step(channel, user, rule, name, comment="fine by us"):
    if channel == "page":
        return client_for(user).post(reverse("governance:routingrule_transition", args=[rule.pk, name]),
                                     {"comment": comment})
    return client_for(user).post(reverse(f"api:routingrule-{name if name != 'request' else 'request-again'}",
                                         args=[rule.pk]), {"comment": comment}, content_type="application/json")


def requested_rule(scene, by) -> RoutingRule:
    assert create_by_page(by, rule_data(scene)).status_code == 302
    return RoutingRule.objects.get(source_pattern="parcels.shipped")


def routed_ids() -> list[str]:
    return [route["id"] for route in compile_mesh_config()["routing_rules"]]


# Requesting


@pytest.mark.parametrize("channel", ["page", "api"])
def test_a_rule_reading_another_teams_topic_is_requested_and_not_compiled(scene, people, logistics, channel):
    data = rule_data(scene)
    response = (create_by_page if channel == "page" else create_by_api)(people["bob"], data)
    assert response.status_code in (201, 302)
    rule = RoutingRule.objects.get()
    assert (rule.state, rule.source_team, rule.requested_by) == (RoutingRule.REQUESTED, logistics, people["bob"])
    assert routed_ids() == [] and compiled_routing_rules() == []
    if channel == "api":
        body = response.json()
        assert body["state"] == "requested" and body["routes"] is False
        assert "awaits the approval" in body["not_routing_because"]


@pytest.mark.parametrize("channel", ["page", "api"])
def test_a_rule_reading_its_own_teams_topics_needs_no_approval(scene, people, channel):
    data = rule_data(scene, source="payments.orders")
    response = (create_by_page if channel == "page" else create_by_api)(people["bob"], data)
    assert response.status_code in (201, 302)
    rule = RoutingRule.objects.get()
    assert (rule.state, rule.source_team) == (RoutingRule.APPROVED, None)
    assert routed_ids() == [rule.rule_id]


@pytest.mark.parametrize("who", ["sam", "both"])
def test_an_author_who_may_approve_it_is_not_asked_to(scene, people, payments, logistics, who):
    user = people["sam"] if who == "sam" else make_member("pat", payments, Membership.MEMBER)
    if who == "both":
        Membership.objects.create(team=logistics, user=user, role=Membership.MEMBER)
    rule = requested_rule(scene, user)
    assert (rule.state, rule.source_team, rule.reviewed_by) == (RoutingRule.APPROVED, logistics, user)
    assert routed_ids() == [rule.rule_id]


def test_the_request_mails_the_source_teams_editors(scene, people, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        rule = requested_rule(scene, people["bob"])
    [message] = mail.outbox
    assert message.to == ["carol@example.com"]
    assert message.subject == "[Meshadmin] Payments asks to route events out of parcels.shipped"
    assert rule.get_absolute_url() in message.body and "payments.parcels" in message.body


@pytest.mark.parametrize("channel", ["page", "api"])
def test_a_source_covering_several_other_teams_is_refused_naming_them(scene, people, store, erin, channel):
    make_topic(erin.memberships.get().team, store, "parcels.returned")
    data = rule_data(scene, source="parcels.*")
    response = (create_by_page if channel == "page" else create_by_api)(people["sam"], data)
    assert response.status_code == 400
    text = response.content.decode() if channel == "page" else response.json()["source_pattern"][0]
    assert "parcels.* covers topics of Compliance and Logistics" in text
    assert not RoutingRule.objects.exists()


# The inbox


def test_the_inbox_shows_the_request_to_the_source_side_only(scene, people):
    rule = requested_rule(scene, people["bob"])
    for name in EVERYONE:
        html = client_for(people[name]).get(reverse("subscriptions:inbox")).content.decode()
        listed = f'id="inbox-route-{rule.pk}"' in html
        assert listed is (name in SOURCE_SIDE), name
        assert (f'data-testid="inbox-count">{1 if listed else 0}<' in html), name


def test_approving_in_the_inbox_replaces_the_row_and_updates_the_count(scene, people):
    rule = requested_rule(scene, people["bob"])
    response = client_for(people["carol"]).post(
        reverse("governance:routingrule_transition", args=[rule.pk, "approve"]), {"comment": "ok"},
        headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith(f'<tr id="inbox-route-{rule.pk}"')
    assert 'data-testid="inbox-done">Approved.' in html and 'data-testid="inbox-count">0<' in html


# Reviewing, as every persona, by page and API


@pytest.mark.parametrize("channel", ["page", "api"])
@pytest.mark.parametrize("who", EVERYONE)
def test_only_the_source_side_approves(scene, people, who, channel):
    rule = requested_rule(scene, people["bob"])
    before = AuditEntry.objects.count()
    response = step(channel, people[who], rule, "approve")
    rule.refresh_from_db()
    if who in SOURCE_SIDE:
        assert response.status_code in (200, 302)
        assert (rule.state, rule.reviewed_by, rule.reviewer_comment) == (RoutingRule.APPROVED, people[who],
                                                                          "fine by us")
        assert routed_ids() == [rule.rule_id]
        entry = AuditEntry.objects.filter(object_type__model="routingrule", object_id=str(rule.pk)).first()
        assert entry.actor == people[who] and (entry.before["state"], entry.after["state"]) == ("requested",
                                                                                                "approved")
    else:
        assert response.status_code == 403, response.content
        text = response.content.decode()
        assert "Only the owners and members of Logistics (whose topics the rule reads) may approve" in text
        assert rule.state == RoutingRule.REQUESTED and routed_ids() == []
        assert AuditEntry.objects.count() == before


@pytest.mark.parametrize("channel", ["page", "api"])
def test_a_rejection_needs_a_comment_and_routes_nothing(scene, people, channel, eager_celery,
                                                       django_capture_on_commit_callbacks):
    rule = requested_rule(scene, people["bob"])
    assert step(channel, people["carol"], rule, "reject", comment=" ").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        assert step(channel, people["carol"], rule, "reject", comment="not our data to give").status_code in (200,
                                                                                                            302)
    rule.refresh_from_db()
    assert (rule.state, rule.reviewer_comment) == (RoutingRule.REJECTED, "not our data to give")
    assert routed_ids() == []
    [message] = mail.outbox
    assert message.to == ["alice@example.com", "bob@example.com"] and "not our data to give" in message.body


def test_the_source_side_revokes_an_approval_and_the_rule_side_asks_again(scene, people):
    rule = requested_rule(scene, people["bob"])
    step("api", people["carol"], rule, "approve")
    assert step("api", people["bob"], rule, "revoke").status_code == 403
    assert step("api", people["carol"], rule, "revoke").status_code == 200
    assert routed_ids() == []
    assert step("api", people["carol"], rule, "request").status_code == 403
    assert step("api", people["bob"], rule, "request").status_code == 200
    rule.refresh_from_db()
    assert rule.state == RoutingRule.REQUESTED and routed_ids() == []
    assert step("api", people["bob"], rule, "request").status_code == 409  # already requested


def test_an_unknown_step_is_404(scene, people):
    rule = requested_rule(scene, people["bob"])
    assert step("page", people["carol"], rule, "destroy").status_code == 404


# Changes


@pytest.mark.parametrize("channel", ["page", "api"])
def test_changing_what_an_approved_rule_copies_asks_again(scene, people, store, logistics, channel):
    rule = requested_rule(scene, people["bob"])
    step("api", people["carol"], rule, "approve")
    other = make_topic(logistics, store, "parcels.lost")
    if channel == "page":
        response = client_for(people["bob"]).post(reverse("governance:routingrule_edit", args=[rule.pk]),
                                                  rule_data(scene, source=other.name))
    else:
        response = client_for(people["bob"]).patch(reverse("api:routingrule-detail", args=[rule.pk]),
                                                   {"source_pattern": other.name}, content_type="application/json")
    assert response.status_code in (200, 302)
    rule.refresh_from_db()
    assert rule.state == RoutingRule.REQUESTED and routed_ids() == []


def test_reordering_or_describing_an_approved_rule_keeps_its_approval(scene, people):
    rule = requested_rule(scene, people["bob"])
    step("api", people["carol"], rule, "approve")
    response = client_for(people["bob"]).patch(reverse("api:routingrule-detail", args=[rule.pk]),
                                               {"order": 5, "description": "renamed", "enabled": False},
                                               content_type="application/json")
    assert response.status_code == 200
    rule.refresh_from_db()
    assert rule.state == RoutingRule.APPROVED and rule.reviewed_by == people["carol"]


def test_an_approved_rule_stops_routing_when_its_source_covers_a_third_teams_new_topic(scene, people, store,
                                                                                       logistics, erin):
    rule = requested_rule(scene, people["bob"])
    RoutingRule.objects.filter(pk=rule.pk).update(source_pattern="parcels.*")
    step("api", people["carol"], rule, "approve")
    assert routed_ids() == [rule.rule_id]
    make_topic(erin.memberships.get().team, store, "parcels.customs")  # Compliance never approved
    assert routed_ids() == []
    [finding] = [f for f in all_findings(people["bob"]) if f.code == "route_not_approved"]
    assert "parcels.customs" in finding.message


# Simulator, validation, pages and API agree with the compiler


def test_simulator_validation_page_and_api_agree_before_and_after_approval(scene, people, logistics):
    app = make_app(logistics, "parcels")
    AccessRule.objects.create(team=logistics, principal_kind=AccessRule.APPLICATION, principal_application=app,
                              topic_pattern="parcels.shipped", publish=True)
    rule = requested_rule(scene, people["bob"])
    for approved in (False, True):
        assert simulate("parcels", "parcels.shipped", "publish").routes == (
            [] if not approved else [{"id": rule.rule_id, "source": "parcels.shipped", "filters": [],
                                      "targets": ["payments.parcels"], "order": 10, "url": rule.get_absolute_url()}])
        for name in EVERYONE:
            client = client_for(people[name])
            page = client.get(rule.get_absolute_url()).content.decode()
            assert ('data-testid="route-live"' in page) is approved, name
            api = client.get(reverse("api:routingrule-detail", args=[rule.pk])).json()
            assert api["routes"] is approved and api["state"] == ("approved" if approved else "requested")
            validation = client.get(reverse("governance:validation")).content.decode()
            assert (f"{rule.rule_id} routes nothing" in validation) is not approved
        simulator = client_for(people["carol"]).get(reverse("governance:simulator"), {
            "application": "parcels", "topic": "parcels.shipped", "action": "publish"}).content.decode()
        assert (rule.rule_id in simulator) is approved
        if not approved:
            step("page", people["carol"], rule, "approve")


def test_the_review_buttons_show_to_the_side_that_may_press_them(scene, people):
    rule = requested_rule(scene, people["bob"])
    for name in EVERYONE:
        html = client_for(people[name]).get(rule.get_absolute_url()).content.decode()
        assert ('data-testid="review-form"' in html) is (name in SOURCE_SIDE), name


# The data migration


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_existing_cross_team_rules_requested():
    # The database and the historical state must agree: topics goes back to before store kinds
    # too, or its later NOT NULL columns would be in the table but not in the models used here.
    before = [("governance", "0005_move_rollout_models"), ("topics", "0002_topic_names_any_case")]
    after = ("governance", "0006_routing_rule_review")
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        team, store = old.get_model("meshadmin", "Team"), old.get_model("topics", "EventStore")
        topic, route = old.get_model("topics", "Topic"), old.get_model("governance", "RoutingRule")
        payments = team.objects.create(name="Payments", slug="payments")
        logistics = team.objects.create(name="Logistics", slug="logistics")
        default = store.objects.create(name="default")
        for name, owner in (("parcels.shipped", logistics), ("payments.orders", payments), ("payments.copy", payments)):
            topic.objects.create(name=name, team=owner, store=default)
        leak = route.objects.create(team=payments, source_pattern="parcels.*")
        own = route.objects.create(team=payments, source_pattern="payments.orders")
        everything = route.objects.create(team=payments, source_pattern="*")
        executor = MigrationExecutor(connection)
        executor.migrate([after])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    states = dict(RoutingRule.objects.values_list("pk", "state"))
    assert states == {leak.pk: "requested", own.pk: "approved", everything.pk: "requested"}
    assert RoutingRule.objects.get(pk=leak.pk).source_team.name == "Logistics"
    entry = AuditEntry.objects.get(object_type__model="routingrule", object_id=str(leak.pk))
    assert entry.actor_name == "system" and entry.after["state"] == "requested"


# A real runtime


def _publish(url: str, topic: str, key: str, event_id: str) -> dict:
    event = {"specversion": "1.0", "id": event_id, "source": "/parcels", "type": "com.example.parcel.shipped",
             "datacontenttype": "application/json", "data": {"parcel": event_id}}
    request = urllib.request.Request(f"{url}/v1/topics/{topic}/events", data=json.dumps(event).encode(),
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/cloudevents+json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own runtime
        return json.loads(response.read())


def test_a_runtime_copies_b_events_into_a_stream_only_after_b_approves(scene, people, logistics, mesh_redis,  # noqa: F811
                                                                       redis_url, settings):
    """Logistics' application publishes through its own sidecar, which runs the document the
    portal pushed: before Logistics approves, nothing reaches Payments' stream; after, each new
    event does, marked with the rule's id."""
    plain = make_app_with_key(logistics, "parcels", may_publish=["parcels.shipped"]).plain_key
    rule = requested_rule(scene, people["bob"])
    first = push.push().version

    loop = Loop()
    runtime = Runtime(Settings(store_url=redis_url, config_redis_url=redis_url, prefix=settings.MESH_KEY_PREFIX,
                               application="parcels", runtime_id="parcels-sidecar", config_poll_interval=0.2))
    server = runtime.make_server()
    reader = redis.Redis.from_url(redis_url)
    try:
        loop.run(runtime.start())
        loop.run(runtime.wait_for_config(first))
        host, port = loop.run(server.start("127.0.0.1", 0))
        url = f"http://{host}:{port}"

        def stored(topic: str) -> list[dict]:
            return [json.loads(fields[b"event"]) for _, fields in reader.xrange(runtime.stores.mesh.stream_key(topic))]

        answer = _publish(url, "parcels.shipped", plain, "before-approval")
        assert "routed" not in answer
        assert [e["id"] for e in stored("parcels.shipped")] == ["before-approval"]
        assert stored("payments.parcels") == []

        assert step("page", people["carol"], rule, "approve").status_code == 302
        second = push.push().version
        assert second > first
        loop.run(runtime.wait_for_config(second))
        answer = _publish(url, "parcels.shipped", plain, "after-approval")
        assert answer["routed"] == {rule.rule_id: 1}
        copies = stored("payments.parcels")
        assert [(e["id"], e["meshroute"]) for e in copies] == [("after-approval", rule.rule_id)]
    finally:
        loop.run(server.shutdown())
        loop.run(runtime.stop())
        loop.close()
        reader.close()
