"""The compiler: deterministic, contract-valid for every database state, and a diff that names
exactly what changed (on the small mesh of tests/portal_support/mesh.py)."""

from __future__ import annotations

import string
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.models import AccessRule, Application, RoutingRule
from meshadmin.models import Team
from meshruntime.config import SCHEMA, compute_checksum, seal, validate_document
from rollout.compiler import compile_mesh_config
from rollout.diff import diff_documents, summarize
from subscriptions.models import Subscription
from tests.portal_support.factories import make_key
from tests.portal_support.mesh import ORDER_SCHEMA, Mesh, build_mesh
from topics.models import EventStore, Topic

pytestmark = pytest.mark.django_db

def sealed(version: int = 1) -> dict:
    return validate_document(seal(compile_mesh_config(), version))


@pytest.fixture
def mesh(db) -> Mesh:
    return build_mesh()


# The document


def test_the_compiled_document_follows_the_contract(mesh):
    doc = sealed()
    assert doc["stores"] == [{"name": "default", "kind": "redis", "connection": "default"}]
    assert [t["name"] for t in doc["topics"]] == ["audit.orders", "orders.created", "orders.shipped"]
    created = doc["topics"][1]
    assert created == {"name": "orders.created", "store": "default", "lifecycle": "active", "sunset": None,
                       "schema": ORDER_SCHEMA, "retention": {"max_age_seconds": 86400, "max_length": None}}
    assert doc["topics"][2]["lifecycle"] == "deprecated" and doc["topics"][2]["sunset"] == "2027-01-31"

    billing, shipping = doc["applications"]
    assert (billing["name"], billing["team"], shipping["team"]) == ("billing", "payments", "logistics")
    active = sorted([mesh.keys["billing"], mesh.keys["billing-expiring"]], key=lambda k: k.prefix)
    assert [k["prefix"] for k in billing["keys"]] == [k.prefix for k in active]
    assert {k["sha256"] for k in billing["keys"]} == {k.sha256 for k in active}
    expiring = next(k for k in billing["keys"] if k["prefix"] == mesh.keys["billing-expiring"].prefix)
    assert expiring["expires_at"].endswith("Z")
    assert shipping["keys"] == []  # the revoked key is gone, as is billing's expired one

    assert [s["id"] for s in doc["subscriptions"]] == sorted(
        [mesh.subs["active"].subscription_id, mesh.subs["paused"].subscription_id])
    paused = next(s for s in doc["subscriptions"] if s["id"] == mesh.subs["paused"].subscription_id)
    assert paused["state"] == "paused" and paused["delivery"]["mode"] == "structured"
    assert paused["secret"] == mesh.subs["paused"].signing_secret

    assert doc["routing_rules"] == [{"id": mesh.routes["audit"].rule_id, "source": "orders.*", "filters": [],
                                     "targets": ["audit.orders"], "order": 10}]


def test_access_rules_expand_teams_and_grant_live_subscriptions(mesh):
    rules = {rule["id"]: rule for rule in sealed()["access_rules"]}
    assert rules[mesh.rules["billing-publish"].rule_id]["principals"] == ["billing"]
    assert rules[mesh.rules["logistics-subscribe"].rule_id]["principals"] == ["shipping"]
    assert rules[mesh.rules["nobody-audit"].rule_id]["principals"] == "*"
    grants = sorted(rule_id for rule_id in rules if rule_id.startswith("sub-"))
    assert grants == sorted([mesh.subs["active"].subscription_id, mesh.subs["paused"].subscription_id])


def test_compiling_the_same_database_twice_gives_the_same_bytes(mesh):
    first, second = compile_mesh_config(), compile_mesh_config()
    assert first == second
    assert compute_checksum(first) == compute_checksum(second)
    assert sealed(1)["checksum"] == sealed(7)["checksum"]  # the version is not part of the content


def test_the_order_of_rows_in_the_database_does_not_matter(mesh):
    before = compute_checksum(compile_mesh_config())
    # Re-create a topic so that its primary key, and its place in any pk order, changes.
    topic = mesh.topics["audit.orders"]
    mesh.routes["audit"].targets.clear()
    mesh.routes["disabled"].targets.clear()
    topic.delete()
    topic = Topic.objects.create(name="audit.orders", team=mesh.payments, store=mesh.store)
    mesh.routes["audit"].targets.set([topic])
    assert compute_checksum(compile_mesh_config()) == before


def test_the_compiler_makes_the_same_number_of_queries_whatever_the_size(mesh, django_assert_max_num_queries):
    with django_assert_max_num_queries(12) as small:
        compile_mesh_config()
    for i in range(30):
        topic = Topic.objects.create(name=f"bulk.t{i}", team=mesh.payments, store=mesh.store)
        app = Application.objects.create(name=f"app-{i}", team=mesh.logistics)
        make_key(app)
        AccessRule.objects.create(team=mesh.payments, principal_kind=AccessRule.TEAM, principal_team=mesh.logistics,
                                  topic_pattern=topic.name, subscribe=True)
        Subscription.objects.create(topic=topic, application=app, state="active", webhook_url="http://x.internal/")
        RoutingRule.objects.create(team=mesh.payments, source_pattern=topic.name).targets.set([topic])
    with django_assert_max_num_queries(len(small.captured_queries)):
        compile_mesh_config()


# Every database state compiles to a valid document


NAMES = st.text(string.ascii_lowercase, min_size=1, max_size=5)
FILTERS = st.sampled_from([[], [{"exact": {"type": "a.b"}}], [{"prefix": {"source": "/x"}}],
                           [{"any": [{"suffix": {"type": ".created"}}, {"not": {"exact": {"type": "z"}}}]}]])


def _field_range(model, name: str) -> tuple[int, int]:
    limits = {type(v).__name__: v.limit_value for v in model._meta.get_field(name).validators}
    return limits.get("MinValueValidator", 0), limits.get("MaxValueValidator", 2**31 - 1)


DELIVERY_SCHEMA = SCHEMA["$defs"]["subscription"]["properties"]["delivery"]["properties"]
DELIVERY_FIELDS = ("timeout_ms", "max_attempts", "backoff_base_ms", "backoff_cap_ms", "max_in_flight")


def _model_int(model, name):
    """What the model accepts, within what the contract accepts (the test below compares the
    two), with its bounds drawn often."""
    low, high = _field_range(model, name)
    low, high = max(low, DELIVERY_SCHEMA[name]["minimum"]), min(high, DELIVERY_SCHEMA[name]["maximum"])
    return st.one_of(st.sampled_from([low, high]), st.integers(low, high))


@pytest.mark.parametrize("name", DELIVERY_FIELDS)
def test_every_delivery_setting_the_model_accepts_the_contract_accepts(name):
    low, high = _field_range(Subscription, name)
    assert DELIVERY_SCHEMA[name]["minimum"] <= low and high <= DELIVERY_SCHEMA[name]["maximum"]


@st.composite
def mesh_states(draw):
    """A description of a database that the models' own rules accept."""
    topic_names = draw(st.lists(st.lists(NAMES, min_size=1, max_size=3).map(".".join), min_size=1, max_size=6,
                                 unique=True))
    app_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    patterns = st.one_of(st.just("*"), st.sampled_from(topic_names or ["x"]),
                         NAMES.map(lambda n: f"{n}.*"), st.sampled_from(topic_names or ["x"]).map(
                             lambda n: n.split(".")[0] + ".*"))
    topics = [{"name": n, "team": draw(st.integers(0, 1)), "deprecated": draw(st.booleans()),
               "max_age": draw(st.none() | st.integers(60, 10**7)), "max_len": draw(st.none() | st.integers(1, 10**7)),
               "schema": draw(st.sampled_from([None, ORDER_SCHEMA, {"type": "string"}]))} for n in topic_names]
    apps = [{"name": n, "team": draw(st.integers(0, 2)),
             "keys": draw(st.lists(st.sampled_from(["active", "revoked", "expired", "future"]), max_size=3))}
            for n in app_names]
    rules = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["application", "team", "everyone"]))
        if kind == "application" and not apps:
            kind = "everyone"
        actions = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
        rules.append({"kind": kind, "app": draw(st.integers(0, max(len(apps) - 1, 0))), "team": draw(st.integers(0, 2)),
                      "pattern": draw(patterns), "publish": actions[0], "subscribe": actions[1],
                      "effect": draw(st.sampled_from(["allow", "deny"]))})
    subs = []
    if topics and apps:
        pairs = draw(st.lists(st.tuples(st.integers(0, len(topics) - 1), st.integers(0, len(apps) - 1)),
                              max_size=5, unique=True))
        for topic_index, app_index in pairs:
            base = draw(_model_int(Subscription, "backoff_base_ms"))
            cap_low, cap_high = _field_range(Subscription, "backoff_cap_ms")
            cap_high = min(cap_high, DELIVERY_SCHEMA["backoff_cap_ms"]["maximum"])
            subs.append({"topic": topic_index, "app": app_index,
                         "state": draw(st.sampled_from(["requested", "active", "paused", "revoked", "rejected"])),
                         "url": draw(st.sampled_from(["http://a.internal/h", "https://b:8443/x?y=1", "http://10.0.0.1/"])),
                         "mode": draw(st.sampled_from(["binary", "structured"])),
                         "timeout_ms": draw(_model_int(Subscription, "timeout_ms")),
                         "max_attempts": draw(_model_int(Subscription, "max_attempts")),
                         "backoff_base_ms": base,
                         "backoff_cap_ms": draw(st.integers(max(base, cap_low), cap_high)),
                         "max_in_flight": draw(_model_int(Subscription, "max_in_flight")),
                         "filters": draw(FILTERS)})
    targets = st.lists(st.sampled_from(topic_names), max_size=2, unique=True)
    routes = [{"source": draw(patterns), "targets": draw(targets), "enabled": draw(st.booleans()),
               "order": draw(st.integers(0, 1000)), "filters": draw(FILTERS)} for _ in range(draw(st.integers(0, 3)))]
    return {"topics": topics, "apps": apps, "rules": rules, "subs": subs, "routes": routes}


def build_state(state: dict) -> None:
    now = timezone.now()
    teams = [Team.objects.create(name=f"Team {i}", slug=f"team-{i}") for i in range(3)]
    store = EventStore.objects.create(name="default")
    topics = [Topic.objects.create(name=t["name"], team=teams[t["team"]], store=store,
                                   lifecycle="deprecated" if t["deprecated"] else "active",
                                   sunset="2030-01-01" if t["deprecated"] else None, data_schema=t["schema"],
                                   retention_max_age=t["max_age"], retention_max_length=t["max_len"])
              for t in state["topics"]]
    apps = []
    for a in state["apps"]:
        app = Application.objects.create(name=a["name"], team=teams[a["team"]])
        for kind in a["keys"]:
            make_key(app, revoked=now if kind == "revoked" else None,
                     expires={"expired": now - timedelta(hours=1), "future": now + timedelta(days=1)}.get(kind))
        apps.append(app)
    for r in state["rules"]:
        rule = AccessRule(team=teams[0], principal_kind=r["kind"], topic_pattern=r["pattern"], publish=r["publish"],
                          subscribe=r["subscribe"], effect=r["effect"],
                          principal_application=apps[r["app"]] if r["kind"] == "application" else None,
                          principal_team=teams[r["team"]] if r["kind"] == "team" else None)
        rule.full_clean()
        rule.save()
    for s in state["subs"]:
        sub = Subscription(topic=topics[s["topic"]], application=apps[s["app"]], webhook_url=s["url"],
                           delivery_mode=s["mode"], timeout_ms=s["timeout_ms"], max_attempts=s["max_attempts"],
                           backoff_base_ms=s["backoff_base_ms"], backoff_cap_ms=s["backoff_cap_ms"],
                           max_in_flight=s["max_in_flight"], filters=s["filters"])
        sub.state = s["state"]
        sub.full_clean()
        sub.save()
    by_name = {t.name: t for t in topics}
    for r in state["routes"]:
        route = RoutingRule(team=teams[0], source_pattern=r["source"], enabled=r["enabled"], order=r["order"],
                            filters=r["filters"])
        route.full_clean()
        route.save()
        route.targets.set([by_name[name] for name in r["targets"]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(state=mesh_states())
def test_every_database_state_compiles_to_a_valid_deterministic_document(db, state):
    with transaction.atomic():
        build_state(state)
        doc = sealed()
        assert compute_checksum(compile_mesh_config()) == doc["checksum"]
        transaction.set_rollback(True)


# The diff names exactly what changed


def test_the_first_version_lists_everything_as_added(mesh):
    diff = diff_documents(None, sealed())
    assert diff["topics"]["added"] == ["audit.orders", "orders.created", "orders.shipped"]
    assert diff["stores"] == {"added": ["default"], "removed": [], "changed": []}


def test_an_unchanged_database_has_an_empty_diff(mesh):
    assert diff_documents(sealed(1), sealed(2)) == {}
    assert summarize({}) == "no change in content"


def test_changing_one_access_rule_names_that_rule_and_its_field(mesh):
    before = sealed(1)
    rule = mesh.rules["billing-publish"]
    rule.subscribe = True
    rule.save()
    diff = diff_documents(before, sealed(2))
    assert diff == {"access_rules": {"added": [], "removed": [], "changed": [
        {"id": rule.rule_id, "fields": {"actions": {"before": ["publish"], "after": ["publish", "subscribe"]}}}]}}
    assert summarize(diff) == f"access rules: 1 changed ({rule.rule_id})"


def test_adding_a_topic_and_removing_a_subscription_names_both(mesh):
    before = sealed(1)
    Topic.objects.create(name="orders.cancelled", team=mesh.payments, store=mesh.store)
    sub = mesh.subs["active"]
    sub.state = "revoked"
    sub.save()
    diff = diff_documents(before, sealed(2))
    assert diff == {
        "topics": {"added": ["orders.cancelled"], "removed": [], "changed": []},
        # A revoked subscription leaves with its subscribe grant.
        "access_rules": {"added": [], "removed": [sub.subscription_id], "changed": []},
        "subscriptions": {"added": [], "removed": [sub.subscription_id], "changed": []},
    }


def test_a_key_change_names_prefixes_and_a_secret_change_hides_the_secret(mesh):
    before = sealed(1)
    mesh.keys["billing"].revoke()
    new_key = make_key(mesh.apps["shipping"])
    sub = mesh.subs["paused"]
    Subscription.objects.filter(pk=sub.pk).update(signing_secret="whsec_rotated", timeout_ms=900)
    diff = diff_documents(before, sealed(2))
    assert diff["applications"]["changed"] == [
        {"id": "billing", "fields": {"keys": {"added": [], "removed": [mesh.keys["billing"].prefix]}}},
        {"id": "shipping", "fields": {"keys": {"added": [new_key.prefix], "removed": []}}},
    ]
    assert diff["subscriptions"]["changed"] == [{"id": sub.subscription_id, "fields": {
        "delivery": {"before": {**before["subscriptions"][1]["delivery"]},
                     "after": {**before["subscriptions"][1]["delivery"], "timeout_ms": 900}},
        "secret": {"secret": True}}}]
    assert "whsec_rotated" not in str(diff)


ENTITY_CHANGES = {
    "topic retention": ("topics", lambda m: Topic.objects.filter(pk=m.topics["orders.created"].pk).update(
        retention_max_age=120), "orders.created"),
    "application team": ("applications", lambda m: Application.objects.filter(pk=m.apps["billing"].pk).update(
        team=m.logistics), "billing"),
    "routing order": ("routing_rules", lambda m: RoutingRule.objects.filter(pk=m.routes["audit"].pk).update(
        order=5), None),
    "subscription filters": ("subscriptions", lambda m: Subscription.objects.filter(pk=m.subs["active"].pk).update(
        filters=[]), None),
}


@pytest.mark.parametrize("change", sorted(ENTITY_CHANGES))
def test_a_single_change_appears_in_its_section_only(mesh, change):
    section, apply, ident = ENTITY_CHANGES[change]
    before = sealed(1)
    apply(mesh)
    diff = diff_documents(before, sealed(2))
    touched = set(diff)
    if section == "applications":
        touched.discard("access_rules")  # a team principal's expansion follows its applications
    assert touched == {section}
    assert len(diff[section]["changed"]) == 1 and not diff[section]["added"] and not diff[section]["removed"]
    if ident:
        assert diff[section]["changed"][0]["id"] == ident
