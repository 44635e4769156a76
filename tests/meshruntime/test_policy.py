"""meshruntime.policy: access decisions, explanations, rule validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshruntime.policy import (
    MERGE_LIMIT,
    Decision,
    Policy,
    PolicyError,
    pattern_matches,
    validate_pattern,
    validate_rule,
    validate_topic_name,
)


def rule(
    rule_id: str,
    topic: str,
    *,
    principals: Any = ("billing",),
    actions: tuple[str, ...] = ("publish", "subscribe"),
    effect: str = "allow",
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "principals": principals if isinstance(principals, str) else list(principals),
        "topic": topic,
        "actions": list(actions),
        "effect": effect,
        "description": "",
    }


def deciding_id(decision: Decision) -> str | None:
    return None if decision.deciding_rule is None else decision.deciding_rule["id"]


# --------------------------------------------------------------------------------------------
# Decisions


def test_default_deny_with_no_rules():
    policy = Policy.from_rules([])
    assert not policy.decide("billing", "orders.created", "publish")
    decision = policy.explain("billing", "orders.created", "subscribe")
    assert decision == Decision(allowed=False, deciding_rule=None, matched=[])
    assert decision.reason == "denied: no rule matches (default deny)"


def test_an_allow_rule_grants_its_application_the_named_actions():
    policy = Policy.from_rules([rule("rule-1", "orders.created", actions=("publish",))])
    assert policy.decide("billing", "orders.created", "publish")
    assert not policy.decide("billing", "orders.created", "subscribe")


def test_an_allow_rule_grants_nothing_to_other_applications():
    policy = Policy.from_rules([rule("rule-1", "orders.created")])
    assert not policy.decide("shipping", "orders.created", "publish")


def test_an_allow_rule_grants_nothing_on_other_topics():
    policy = Policy.from_rules([rule("rule-1", "orders.created")])
    assert not policy.decide("billing", "orders.created.v2", "publish")
    assert not policy.decide("billing", "orders", "publish")


def test_deny_beats_allow_for_the_same_topic():
    policy = Policy.from_rules([rule("rule-1", "orders.created"), rule("rule-2", "orders.created", effect="deny")])
    assert not policy.decide("billing", "orders.created", "publish")
    assert deciding_id(policy.explain("billing", "orders.created", "publish")) == "rule-2"


def test_a_broad_deny_for_everyone_beats_a_specific_allow():
    policy = Policy.from_rules(
        [
            rule("rule-1", "orders.eu.created", principals=["billing"]),
            rule("rule-2", "*", principals="*", effect="deny", actions=("publish",)),
        ]
    )
    assert not policy.decide("billing", "orders.eu.created", "publish")
    assert policy.decide("billing", "orders.eu.created", "subscribe")


def test_a_prefix_pattern_covers_deeper_topics_but_not_the_prefix_itself():
    policy = Policy.from_rules([rule("rule-1", "orders.*")])
    assert policy.decide("billing", "orders.created", "publish")
    assert policy.decide("billing", "orders.eu.created", "publish")
    assert not policy.decide("billing", "orders", "publish")
    assert not policy.decide("billing", "ordersx.created", "publish")
    assert not policy.decide("billing", "payments.orders.created", "publish")


def test_a_multi_segment_prefix_covers_only_its_subtree():
    policy = Policy.from_rules([rule("rule-1", "orders.eu.*")])
    assert policy.decide("billing", "orders.eu.created", "publish")
    assert not policy.decide("billing", "orders.us.created", "publish")
    assert not policy.decide("billing", "orders.eu", "publish")


def test_the_star_pattern_covers_every_topic():
    policy = Policy.from_rules([rule("rule-1", "*")])
    assert policy.decide("billing", "orders", "publish")
    assert policy.decide("billing", "payments.eu.settled", "subscribe")


@pytest.mark.parametrize("everyone", ["*", ["*"]])
def test_the_everyone_principal_covers_any_application(everyone):
    policy = Policy.from_rules([rule("rule-1", "orders.*", principals=everyone)])
    assert policy.decide("billing", "orders.created", "publish")
    assert policy.decide("an-app-no-rule-names", "orders.created", "subscribe")


def test_a_deny_for_one_application_leaves_the_others_allowed():
    policy = Policy.from_rules(
        [
            rule("rule-1", "orders.*", principals="*"),
            rule("rule-2", "orders.*", principals=["shipping"], effect="deny"),
        ]
    )
    assert policy.decide("billing", "orders.created", "publish")
    assert not policy.decide("shipping", "orders.created", "publish")


def test_an_unknown_action_is_refused():
    policy = Policy.from_rules([rule("rule-1", "*")])
    with pytest.raises(PolicyError, match="unknown action 'consume'"):
        policy.decide("billing", "orders.created", "consume")
    with pytest.raises(PolicyError, match="unknown action"):
        policy.explain("billing", "orders.created", "Publish")


def test_who_may_lists_the_allowed_applications_in_the_order_given():
    policy = Policy.from_rules(
        [
            rule("rule-1", "orders.*", principals="*", actions=("subscribe",)),
            rule("rule-2", "orders.created", principals=["audit"], effect="deny"),
        ]
    )
    apps = ["shipping", "audit", "billing"]
    assert policy.who_may("orders.created", "subscribe", apps) == ["shipping", "billing"]
    assert policy.who_may("orders.created", "publish", apps) == []


def test_the_policy_keeps_its_own_copy_of_the_rules():
    rules = [rule("rule-1", "orders.*")]
    policy = Policy.from_rules(rules)
    rules[0]["effect"] = "deny"
    rules[0]["principals"].append("shipping")
    assert policy.decide("billing", "orders.created", "publish")
    assert not policy.decide("shipping", "orders.created", "publish")
    assert policy.rules[0]["effect"] == "allow"
    assert policy.rules[0]["principals"] == ["billing"]
    assert len(policy) == 1


def test_a_new_policy_does_not_reuse_the_old_ones_decisions():
    allow = Policy.from_rules([rule("rule-1", "orders.*")])
    assert allow.decide("billing", "orders.created", "publish")
    deny = Policy.from_rules([rule("rule-1", "orders.*", effect="deny")])
    assert not deny.decide("billing", "orders.created", "publish")
    assert allow.decide("billing", "orders.created", "publish")


@pytest.mark.parametrize("cache_size", [0, 1, 2, 100])
def test_decisions_do_not_depend_on_the_cache(cache_size):
    rules = [rule("rule-1", "orders.*"), rule("rule-2", "orders.eu.*", effect="deny")]
    policy = Policy.from_rules(rules, cache_size=cache_size)
    queries = [("billing", "orders.us.created"), ("billing", "orders.eu.created"), ("shipping", "orders.x")]
    for _ in range(3):
        assert [policy.decide(app, topic, "publish") for app, topic in queries] == [True, False, False]
        assert [policy.decide_uncached(app, topic, "publish") for app, topic in queries] == [True, False, False]


def test_the_decision_cache_stays_within_its_bound():
    policy = Policy.from_rules([rule("rule-1", "orders.*")], cache_size=5)
    for n in range(23):
        policy.decide(f"app-{n % 4}", f"orders.t{n}", ("publish", "subscribe")[n % 2])
        assert 1 <= policy.cached_decisions <= 5
    uncached = Policy.from_rules([rule("rule-1", "orders.*")], cache_size=0)
    assert uncached.decide("billing", "orders.created", "publish")
    assert uncached.cached_decisions == 0


# --------------------------------------------------------------------------------------------
# Explanations


def test_explain_names_the_most_specific_deny():
    policy = Policy.from_rules(
        [
            rule("rule-1", "*", principals="*", effect="deny"),
            rule("rule-2", "orders.*", effect="deny"),
            rule("rule-3", "orders.eu.*", effect="deny"),
            rule("rule-4", "orders.eu.created"),
        ]
    )
    decision = policy.explain("billing", "orders.eu.created", "publish")
    assert not decision.allowed
    assert deciding_id(decision) == "rule-3"
    assert decision.reason == "denied by rule rule-3 (orders.eu.*)"


def test_explain_prefers_an_exact_allow_over_a_prefix_allow_over_star():
    policy = Policy.from_rules([rule("rule-1", "*"), rule("rule-2", "orders.*"), rule("rule-3", "orders.created")])
    decision = policy.explain("billing", "orders.created", "publish")
    assert decision.allowed
    assert [r["id"] for r in decision.matched] == ["rule-3", "rule-2", "rule-1"]
    assert decision.reason == "allowed by rule rule-3 (orders.created)"


def test_on_a_tie_the_rule_naming_the_application_beats_the_everyone_rule():
    policy = Policy.from_rules(
        [rule("rule-1", "orders.*", principals="*"), rule("rule-2", "orders.*", principals=["billing"])]
    )
    assert deciding_id(policy.explain("billing", "orders.created", "publish")) == "rule-2"


def test_on_a_full_tie_the_smaller_id_decides():
    policy = Policy.from_rules(
        [rule("rule-b", "orders.created", effect="deny"), rule("rule-a", "orders.created", effect="deny")]
    )
    decision = policy.explain("billing", "orders.created", "publish")
    assert [r["id"] for r in decision.matched] == ["rule-a", "rule-b"]


def test_matched_lists_every_matching_rule_denies_first():
    policy = Policy.from_rules(
        [
            rule("rule-1", "orders.created"),
            rule("rule-2", "*", principals="*", effect="deny"),
            rule("rule-3", "orders.*", principals=["shipping"]),
            rule("rule-4", "orders.*", effect="deny", actions=("subscribe",)),
            rule("rule-5", "orders.*", principals="*"),
        ]
    )
    decision = policy.explain("billing", "orders.created", "publish")
    assert [r["id"] for r in decision.matched] == ["rule-2", "rule-1", "rule-5"]
    assert decision.deciding_rule == {**rule("rule-2", "*", principals="*", effect="deny")}


def test_an_approved_subscription_rule_is_named_in_the_explanation():
    policy = Policy.from_rules([rule("sub-7", "orders.created", actions=("subscribe",))])
    assert deciding_id(policy.explain("billing", "orders.created", "subscribe")) == "sub-7"


def test_a_decision_is_immutable():
    decision = Policy.from_rules([]).explain("billing", "orders.created", "publish")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = True  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Patterns and rule validation


@pytest.mark.parametrize("pattern", ["*", "orders", "orders.*", "orders.eu-west_1.created", "a.b.c.*", "x" * 249])
def test_valid_patterns_are_accepted(pattern):
    validate_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    ["", None, 3, "orders created", "orders*", "*.created", "orders.*.created", "orders.", ".orders",
     "orders..created", "orders.**", "orders created", "x" * 250, "orders.ü"],
)  # fmt: skip
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(PolicyError):
        validate_pattern(pattern)


def test_an_invalid_pattern_message_says_what_is_allowed():
    with pytest.raises(PolicyError, match=r"'\*\.created' must be '\*', '<name>\.\*' or a topic name"):
        validate_pattern("*.created")
    with pytest.raises(PolicyError, match="longer than 249 characters"):
        validate_pattern("x" * 250)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("*", "anything.at.all", True),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.eu.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "ordersx.created", False),
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.created.v2", False),
        ("orders.created", "orders", False),
    ],
)
def test_pattern_matches(pattern, topic, expected):
    assert pattern_matches(pattern, topic) is expected


def test_pattern_matches_refuses_an_invalid_pattern():
    with pytest.raises(PolicyError):
        pattern_matches("orders*", "orders.created")


def test_topic_names_are_validated():
    validate_topic_name("orders.eu.created")
    for bad in ["", "orders.*", "*", "Orders Created", "x" * 250]:
        with pytest.raises(PolicyError):
            validate_topic_name(bad)


VALID = rule("rule-9", "orders.*")
MISSING = object()


def changed(**fields: Any) -> dict[str, Any]:
    """VALID with some fields replaced, or removed when given MISSING."""
    result = {**VALID, **fields}
    return {key: value for key, value in result.items() if value is not MISSING}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["rule-9"], "an access rule must be an object, got list"),
        (changed(id=MISSING), 'an access rule needs a non-empty string "id", got None'),
        (changed(id=""), 'an access rule needs a non-empty string "id"'),
        (changed(id=9), 'an access rule needs a non-empty string "id", got 9'),
        (changed(principals=MISSING), 'rule rule-9: "principals" must be a list'),
        (
            changed(principals="billing"),
            'rule rule-9: "principals" must be a list of application names or "*"',
        ),
        (changed(principals=[]), 'rule rule-9: "principals" must name at least one application, or be "*"'),
        (
            changed(principals=["billing", ""]),
            "rule rule-9: \"principals\" must hold non-empty strings, got ''",
        ),
        (changed(principals=["billing", 3]), 'rule rule-9: "principals" must hold non-empty strings, got 3'),
        (
            changed(principals=["*", "billing"]),
            'rule rule-9: "principals" cannot mix "*" with application names',
        ),
        (changed(topic=MISSING), 'rule rule-9: "topic": a topic pattern must be a non-empty string'),
        (changed(topic="orders*"), "rule rule-9: \"topic\": topic pattern 'orders*' must be"),
        (changed(actions=MISSING), 'rule rule-9: "actions" must be a non-empty list'),
        (changed(actions=[]), 'rule rule-9: "actions" must be a non-empty list of "publish" and "subscribe"'),
        (changed(actions="publish"), 'rule rule-9: "actions" must be a non-empty list'),
        (changed(actions=["publish", "consume"]), "rule rule-9: \"actions\" holds 'consume'; expected"),
        (changed(effect=MISSING), 'rule rule-9: "effect" must be "allow" or "deny", got None'),
        (changed(effect="Deny"), 'rule rule-9: "effect" must be "allow" or "deny", got \'Deny\''),
        (changed(description=5), 'rule rule-9: "description" must be a string'),
    ],
)
def test_invalid_rules_are_refused_naming_the_rule_and_the_field(bad, message):
    with pytest.raises(PolicyError) as raised:
        validate_rule(bad)
    assert str(raised.value).startswith(message)
    with pytest.raises(PolicyError) as raised:
        Policy.from_rules([VALID | {"id": "rule-1"}, bad])
    assert str(raised.value).startswith(f"access_rules[1]: {message}")


def test_a_valid_rule_passes_and_unknown_keys_are_ignored():
    validate_rule(VALID)
    validate_rule({**VALID, "added_in_a_later_format": True})
    validate_rule({k: v for k, v in VALID.items() if k != "description"})


def test_duplicate_rule_ids_are_refused():
    with pytest.raises(PolicyError, match=r"^access_rules\[2\]: rule id 'rule-1' is used twice"):
        Policy.from_rules([rule("rule-1", "a"), rule("rule-2", "b"), rule("rule-1", "c")])


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


# --------------------------------------------------------------------------------------------
# Properties: the index against a naive scan over the rules

APPS = ["billing", "shipping", "audit"]
SEGMENTS = ["orders", "eu", "created", "x"]
ACTIONS = ["publish", "subscribe"]

topic_names = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(".".join)
patterns = st.one_of(
    st.just("*"),
    topic_names,
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(lambda s: ".".join(s) + ".*"),
)
principal_lists = st.one_of(
    st.just("*"),
    st.just(["*"]),
    st.lists(st.sampled_from([*APPS, "other"]), min_size=1, max_size=3),
)
rule_bodies = st.fixed_dictionaries(
    {
        "principals": principal_lists,
        "topic": patterns,
        "actions": st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=2),
        "effect": st.sampled_from(["allow", "deny"]),
    }
)
rule_lists = st.lists(rule_bodies, max_size=12).map(
    # Ids in an order unrelated to list position, so that the tie-break by id is exercised.
    lambda bodies: [{"id": f"rule-{(i * 7) % 13}", **body} for i, body in enumerate(bodies)]
)
queries = st.tuples(st.sampled_from([*APPS, "nobody"]), topic_names, st.sampled_from(ACTIONS))


def naive_covers(pattern: str, topic: str) -> bool:
    if pattern == "*":
        return True
    if pattern[-2:] == ".*":
        stem = pattern[:-2]
        return topic[: len(stem) + 1] == stem + "." and len(topic) > len(stem) + 1
    return pattern == topic


def naive_explain(rules: list[dict[str, Any]], app: str, topic: str, action: str) -> tuple[bool, list[str]]:
    """Scan every rule; return (allowed, ids of the matching rules in precedence order)."""

    def for_everyone(r: dict[str, Any]) -> bool:
        return r["principals"] in ("*", ["*"])

    matching = [
        r
        for r in rules
        if action in r["actions"] and (for_everyone(r) or app in r["principals"]) and naive_covers(r["topic"], topic)
    ]

    def precedence(r: dict[str, Any]) -> tuple[Any, ...]:
        kind = 2 if r["topic"] == "*" else 1 if r["topic"].endswith(".*") else 0
        return (r["effect"] != "deny", kind, -len(r["topic"]), for_everyone(r), r["id"])

    matching.sort(key=precedence)
    allowed = bool(matching) and not any(r["effect"] == "deny" for r in matching)
    return allowed, [r["id"] for r in matching]


@given(rule_lists, st.lists(queries, min_size=1, max_size=10), st.sampled_from([MERGE_LIMIT, 0]))
def test_the_index_decides_like_a_naive_scan(rules, query_list, merge_limit):
    """Whether everyone's patterns are merged into the applications' tables or kept apart."""
    policy = Policy.from_rules(rules, merge_limit=merge_limit)
    for app, topic, action in query_list:
        allowed, matched_ids = naive_explain(rules, app, topic, action)
        decision = policy.explain(app, topic, action)
        assert policy.decide(app, topic, action) is allowed
        assert policy.decide_uncached(app, topic, action) is allowed
        assert decision.allowed is allowed
        assert [r["id"] for r in decision.matched] == matched_ids
        assert deciding_id(decision) == (matched_ids[0] if matched_ids else None)


@given(rule_lists, queries, principal_lists, st.data())
def test_a_matching_deny_anywhere_always_wins(rules, query, principals, data):
    app, topic, action = query
    if principals not in ("*", ["*"]):
        principals = [*principals, app]
    segments = topic.split(".")
    covering = ["*", topic, *(".".join(segments[:n]) + ".*" for n in range(1, len(segments)))]
    deny = {
        "id": "rule-deny",
        "principals": principals,
        "topic": data.draw(st.sampled_from(covering)),
        "actions": [action],
        "effect": "deny",
    }
    position = data.draw(st.integers(0, len(rules)))
    policy = Policy.from_rules([*rules[:position], deny, *rules[position:]])
    decision = policy.explain(app, topic, action)
    assert not policy.decide(app, topic, action)
    assert not decision.allowed
    assert decision.deciding_rule is not None and decision.deciding_rule["effect"] == "deny"
    assert deny in decision.matched


@given(queries)
def test_default_deny_without_rules(query):
    policy = Policy.from_rules([])
    assert not policy.decide(*query)
    assert policy.explain(*query).deciding_rule is None


@given(rule_lists, queries)
def test_who_may_agrees_with_decide(rules, query):
    _, topic, action = query
    policy = Policy.from_rules(rules)
    candidates = [*APPS, "nobody"]
    assert policy.who_may(topic, action, candidates) == [app for app in candidates if policy.decide(app, topic, action)]
