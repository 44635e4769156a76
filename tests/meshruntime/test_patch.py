"""Config patches (meshruntime.patch): made by the portal, applied and checked by runtimes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from factories import access_rule, make_config, subscription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshruntime.config import ConfigError, compute_checksum, seal
from meshruntime.patch import BLOCK, Applied, PatchError, apply_patches, changed_part, make_patch

TOPICS = [f"orders.t{i:03d}" for i in range(40)]
APPLICATIONS = ["auditor", "billing", "shipping", "stock"]


@st.composite
def documents(draw, version: int = 1) -> dict[str, Any]:
    """A valid document over a fixed universe of names, so that two draws share entries."""
    topics = sorted(draw(st.sets(st.sampled_from(TOPICS), min_size=1)))
    applications = sorted(draw(st.sets(st.sampled_from(APPLICATIONS), min_size=1)))
    rules = {}
    for number in draw(st.sets(st.integers(1, 600), max_size=40)):
        rules[f"rule-{number}"] = access_rule(
            f"rule-{number}", draw(st.lists(st.sampled_from(applications), min_size=1, max_size=2, unique=True)),
            draw(st.sampled_from(["*", "orders.*", *topics])), draw(st.sampled_from([["publish"], ["subscribe"]])),
            effect=draw(st.sampled_from(["allow", "deny"])), description=draw(st.sampled_from(["", "a", "b"])))
    subscriptions = {}
    for number in draw(st.sets(st.integers(1, 30), max_size=5)):
        subscriptions[f"sub-{number}"] = subscription(
            f"sub-{number}", draw(st.sampled_from(topics)), draw(st.sampled_from(applications)),
            delivery={"max_attempts": draw(st.integers(1, 9))})
    doc = make_config(version=version, bare=True, topics=topics, applications=applications,
                      access_rules=[rules[key] for key in sorted(rules)],
                      subscriptions=[subscriptions[key] for key in sorted(subscriptions)])
    return doc


def patched(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch = make_patch(old, new)
    assert patch is not None
    return Applied.of(old).apply(patch).document


def with_rules(doc: dict[str, Any], version: int, change) -> dict[str, Any]:
    body = copy.deepcopy({key: value for key, value in doc.items() if key not in ("version", "checksum")})
    change(body)
    return seal(body, version)


# --------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), documents(version=2))
def test_applying_the_patch_gives_the_new_document(old, new) -> None:
    assert patched(old, new) == new


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_checksum_from_blocks_is_the_documents(doc) -> None:
    assert Applied.of(doc).content_checksum() == compute_checksum(doc) == doc["checksum"]


def test_a_long_list_changed_in_many_places_across_blocks() -> None:
    rules = [access_rule(f"rule-{i:05d}", ["billing"], "orders.*", ["publish"]) for i in range(3 * BLOCK + 7)]
    old = make_config(access_rules=rules)

    def change(body):
        body["access_rules"][5]["description"] = "changed"  # in place, first block
        del body["access_rules"][BLOCK + 3]  # shifts everything after it
        body["access_rules"].insert(2 * BLOCK, access_rule("rule-600000", ["billing"], "orders.*"))
        body["access_rules"][-1]["description"] = "last"

    new = with_rules(old, 2, change)
    patch = make_patch(old, new)
    last = len(new["access_rules"]) - 1  # the grant of sub-1, after the rules
    assert [splice[0] for splice in patch["sections"]["access_rules"]] == [5, BLOCK + 3, 2 * BLOCK, last]
    applied = Applied.of(old).apply(patch)
    assert applied.document == new
    assert applied.index("access_rules")["rule-600000"]["topic"] == "orders.*"
    assert f"rule-{BLOCK + 3:05d}" not in applied.index("access_rules")


def test_patches_chain_and_a_version_changed_in_place_shares_the_rest() -> None:
    v1 = make_config()
    v2 = with_rules(v1, 2, lambda body: body["access_rules"][0].update(description="two"))
    v3 = with_rules(v2, 3, lambda body: body["topics"].append(
        {**body["topics"][0], "name": "orders.zzz"}))
    first = Applied.of(v1)
    third = apply_patches(first, [make_patch(v1, v2), make_patch(v2, v3)])
    assert third.document == v3
    assert third.document["topics"] is not v1["topics"] and v1["topics"][-1]["name"] == "orders.shipped"
    assert third.document["applications"] is v1["applications"]  # untouched lists are shared


def test_what_the_caller_says_changed_is_what_the_patch_carries() -> None:
    old = make_config()
    new = with_rules(old, 2, lambda body: body["access_rules"][0].update(description="x"))
    assert make_patch(old, new, {"access_rules": {"rule-1"}}) == make_patch(old, new)
    assert make_patch(old, new, {"topics": set()})["sections"] == {}  # then it fails the checksum (below)


# --------------------------------------------------------------------------------------------
# What a patch cannot say


def test_no_patch_when_a_field_outside_the_lists_changed() -> None:
    old = make_config()
    assert make_patch(old, seal({**old, "format": 2}, 2)) is None


def test_no_patch_when_entries_both_hold_changed_order() -> None:
    old = make_config()
    new = with_rules(old, 2, lambda body: body["access_rules"].reverse())
    assert make_patch(old, new) is None


# --------------------------------------------------------------------------------------------
# Refusals: each names what is wrong, and nothing of the held version changes


def refused(doc: dict[str, Any], patch: Any) -> str:
    applied = Applied.of(doc)
    before = copy.deepcopy(doc)
    with pytest.raises((PatchError, ConfigError)) as caught:
        applied.apply(patch)
    assert applied.document == before and applied.content_checksum() == doc["checksum"]
    return str(caught.value)


@pytest.fixture
def pair() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    old = make_config()
    new = with_rules(old, 2, lambda body: body["access_rules"][0].update(description="changed"))
    return old, new, make_patch(old, new)


def test_a_patch_for_another_base_is_refused(pair) -> None:
    old, _new, patch = pair
    assert refused(seal(old, 5), patch).startswith("base: version 1")
    other = {**patch, "base": {"version": 1, "checksum": "0" * 64}}
    assert refused(old, other).startswith("base: version 1 (000000000000), not the version held 1")


@pytest.mark.parametrize(("change", "starts"), [
    (lambda p: p.update(sections={"access_rules": [[0, 1]]}), "sections.access_rules[0]: must be [index, remove"),
    (lambda p: p.update(sections={"access_rules": "x"}), "sections.access_rules[0]: must be [index, remove"),
    (lambda p: p.update(sections={"access_rules": [[2, 5, []]]}), "sections.access_rules[0]: removes 5 at 2"),
    (lambda p: p.update(sections={"access_rules": [[1, 0, []], [0, 0, []]]}), "sections.access_rules[1]: removes 0"),
    (lambda p: p.update(sections={"access_rules": [[0, 0, [{"no": "id"}]]]}),
     "sections.access_rules[0]: every entry must be an object with a string 'id'"),
    (lambda p: p.update(sections={"widgets": []}), "sections.widgets: not a list of the document"),
    (lambda p: p.update(version=1), "version: must be a number above the base's 1"),
    (lambda p: p.pop("checksum"), "checksum: missing"),
    (lambda p: p.update(base=None), "base: must be {version, checksum}"),
    (lambda p: p.update(sections=[]), "sections: must be an object"),
])
def test_a_malformed_patch_is_refused_naming_the_place(pair, change, starts) -> None:
    old, _new, patch = pair
    patch = copy.deepcopy(patch)
    change(patch)
    assert refused(old, patch).startswith(starts)


def test_a_patch_that_does_not_give_the_sealed_content_is_refused(pair) -> None:
    old, _new, patch = pair
    tampered = copy.deepcopy(patch)
    tampered["sections"]["access_rules"][0][2][0]["effect"] = "deny"
    assert refused(old, tampered).startswith("checksum: the patched content's checksum is")


def test_an_identity_used_twice_is_refused() -> None:
    old = make_config()
    duplicate = copy.deepcopy(old["access_rules"][1])
    patch = {"format": 1, "version": 2, "checksum": "0" * 64, "generated_at": old["generated_at"],
             "base": {"version": 1, "checksum": old["checksum"]},
             "sections": {"access_rules": [[0, 0, [duplicate]]]}}
    assert refused(old, patch) == "sections.access_rules: the result uses an id twice"


def test_a_changed_entry_is_validated_with_what_it_refers_to() -> None:
    old = make_config()
    # Sealed by a (buggy) portal, so the checksum matches: the validation must catch it.
    new = with_rules(old, 2, lambda body: body["subscriptions"][0].update(topic="orders.gone"))
    assert refused(old, make_patch(old, new)) == "subscriptions[0].topic: no topic named 'orders.gone'"


def test_the_changed_part_carries_what_its_entries_refer_to() -> None:
    doc = make_config()
    part = changed_part(doc, {"access_rules": ["sub-1"]})
    assert [s["id"] for s in part["subscriptions"]] == ["sub-1"]
    assert [t["name"] for t in part["topics"]] == ["orders.created"]
    assert [a["name"] for a in part["applications"]] == ["shipping"]
    assert part["stores"] == doc["stores"] and part["routing_rules"] == []
