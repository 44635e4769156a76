"""meshruntime.filters: CloudEvents Subscriptions API filters, validation and evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshruntime.filters import (
    FilterError,
    canonical_string,
    compile_filter,
    compile_filters,
    matches,
    validate_filter,
    validate_filters,
)

ORDER_CREATED = {
    "specversion": "1.0",
    "id": "e-1",
    "type": "com.example.order.created",
    "source": "/orders/eu",
    "subject": "invoice.pdf",
}


# --------------------------------------------------------------------------------------------
# Matching


def test_exact_matches_an_equal_attribute():
    assert matches([{"exact": {"type": "com.example.order.created"}}], ORDER_CREATED)


def test_exact_is_case_sensitive_and_whole_value():
    assert not matches([{"exact": {"type": "com.example.order.CREATED"}}], ORDER_CREATED)
    assert not matches([{"exact": {"type": "com.example.order"}}], ORDER_CREATED)


def test_prefix_matches_the_start_of_an_attribute():
    assert matches([{"prefix": {"source": "/orders/"}}], ORDER_CREATED)
    assert not matches([{"prefix": {"source": "/payments/"}}], ORDER_CREATED)


def test_suffix_matches_the_end_of_an_attribute():
    assert matches([{"suffix": {"subject": ".pdf"}}], ORDER_CREATED)
    assert not matches([{"suffix": {"subject": ".jpg"}}], ORDER_CREATED)


def test_every_entry_of_a_string_dialect_must_match():
    both = {"exact": {"type": "com.example.order.created", "source": "/orders/eu"}}
    one_wrong = {"exact": {"type": "com.example.order.created", "source": "/orders/us"}}
    assert matches([both], ORDER_CREATED)
    assert not matches([one_wrong], ORDER_CREATED)


@pytest.mark.parametrize("dialect", ["exact", "prefix", "suffix"])
def test_a_missing_attribute_never_matches(dialect):
    assert not matches([{dialect: {"region": "eu"}}], ORDER_CREATED)


def test_a_null_attribute_counts_as_missing():
    assert not matches([{"prefix": {"region": "e"}}], {**ORDER_CREATED, "region": None})


def test_not_of_a_missing_attribute_matches():
    assert matches([{"not": {"exact": {"region": "eu"}}}], ORDER_CREATED)


def test_not_inverts_its_filter():
    assert not matches([{"not": {"prefix": {"source": "/orders/"}}}], ORDER_CREATED)


def test_all_needs_every_filter_and_any_needs_one():
    hit, miss = {"exact": {"id": "e-1"}}, {"exact": {"id": "e-2"}}
    assert matches([{"all": [hit, hit]}], ORDER_CREATED)
    assert not matches([{"all": [hit, miss]}], ORDER_CREATED)
    assert matches([{"any": [miss, hit]}], ORDER_CREATED)
    assert not matches([{"any": [miss, miss]}], ORDER_CREATED)


def test_three_or_more_nested_filters_are_evaluated():
    hit, miss = {"exact": {"id": "e-1"}}, {"exact": {"id": "e-2"}}
    assert matches([{"all": [hit, hit, hit]}], ORDER_CREATED)
    assert not matches([{"all": [hit, hit, miss]}], ORDER_CREATED)
    assert matches([{"any": [miss, miss, hit]}], ORDER_CREATED)
    assert not matches([{"any": [miss, miss, miss]}], ORDER_CREATED)
    three = {"exact": {"id": "e-1", "type": "com.example.order.created", "source": "/orders/us"}}
    assert not matches([three], ORDER_CREATED)


def test_an_empty_filter_list_matches_every_event():
    assert matches([], ORDER_CREATED)
    assert matches([], {})


def test_a_filter_list_is_a_conjunction():
    hit, miss = {"exact": {"id": "e-1"}}, {"suffix": {"subject": ".jpg"}}
    assert matches([hit, hit], ORDER_CREATED)
    assert not matches([hit, miss], ORDER_CREATED)
    assert not matches([miss, hit], ORDER_CREATED)
    assert not matches([hit, hit, miss], ORDER_CREATED)


def test_compile_filters_returns_a_reusable_matcher():
    matcher = compile_filters([{"prefix": {"type": "com.example.order."}}])
    assert matcher(ORDER_CREATED)
    assert not matcher({**ORDER_CREATED, "type": "com.example.payment.settled"})


def test_compile_filter_compiles_one_expression():
    matcher = compile_filter({"not": {"exact": {"id": "e-1"}}})
    assert not matcher(ORDER_CREATED)
    assert matcher({"id": "e-2"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (b"\x00\xffhi", "AP9oaQ=="),
        (datetime(2026, 11, 28, 14, 30, tzinfo=UTC), "2026-11-28T14:30:00Z"),
        (datetime(2026, 11, 28, 14, 30, tzinfo=timezone(timedelta(hours=1))), "2026-11-28T14:30:00+01:00"),
        ("already a string", "already a string"),
    ],
)
def test_non_string_attributes_compare_by_canonical_string(value, expected):
    assert canonical_string(value) == expected
    assert matches([{"exact": {"ext": expected}}], {"ext": value})


def test_a_boolean_is_not_compared_as_an_integer():
    assert not matches([{"exact": {"flag": "1"}}], {"flag": True})


def test_prefix_and_suffix_work_on_canonical_strings():
    assert matches([{"prefix": {"time": "2026-11-28T"}}], {"time": datetime(2026, 11, 28, tzinfo=UTC)})
    assert matches([{"suffix": {"count": "00"}}], {"count": 1200})


# --------------------------------------------------------------------------------------------
# Validation

ALL_DIALECTS = "exact, prefix, suffix, all, any, not"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"exact": {"type": "x"}}, "filters: must be a list of filters, got dict"),
        ("exact", "filters: must be a list of filters, got str"),
        ([["exact"]], "filters[0]: a filter must be an object with one dialect, got list"),
        ([None], "filters[0]: a filter must be an object with one dialect, got null"),
        ([{}], f"filters[0]: a filter must name exactly one dialect ({ALL_DIALECTS}), got none"),
        (
            [{"exact": {"type": "x"}, "prefix": {"type": "x"}}],
            f"filters[0]: a filter must name exactly one dialect ({ALL_DIALECTS}), got exact, prefix",
        ),
        (
            [{"exact": {"id": "1"}}, {"sql": "type = 'x'"}],
            "filters[1]: the sql dialect is not supported: filters never execute user code; "
            "use one of exact, prefix, suffix, all, any, not",
        ),
        (
            [{"regex": {"type": ".*"}}],
            "filters[0]: unknown dialect 'regex'; expected one of exact, prefix, suffix, all, any, not",
        ),
        (
            [{"exact": ["type", "x"]}],
            "filters[0].exact: must be an object of attribute name to string, got list",
        ),
        ([{"prefix": {}}], "filters[0].prefix: must name at least one attribute"),
        ([{"suffix": {1: "x"}}], "filters[0].suffix: attribute name 1 must be a string"),
        ([{"exact": {"": "x"}}], "filters[0].exact: attribute name must not be empty"),
        (
            [{"exact": {"id": "1"}}, {"any": [{"exact": {"Type": "x"}}]}],
            'filters[1].any[0].exact: attribute name "Type" must be lowercase letters and digits',
        ),
        (
            [{"exact": {"my-ext": "x"}}],
            'filters[0].exact: attribute name "my-ext" must be lowercase letters and digits',
        ),
        (
            [{"exact": {"a" * 21: "x"}}],
            f'filters[0].exact: attribute name "{"a" * 21}" must be at most 20 characters',
        ),
        (
            [{"exact": {"data": "x"}}],
            'filters[0].exact: "data" is the event payload, not an attribute; filters match attributes only',
        ),
        ([{"exact": {"type": 1}}], "filters[0].exact.type: value must be a string, got int"),
        ([{"prefix": {"type": None}}], "filters[0].prefix.type: value must be a string, got null"),
        ([{"suffix": {"type": ""}}], "filters[0].suffix.type: value must not be empty"),
        ([{"all": {"exact": {"id": "1"}}}], "filters[0].all: must be a list of filters, got dict"),
        ([{"all": []}], "filters[0].all: must contain at least one filter"),
        ([{"any": []}], "filters[0].any: must contain at least one filter"),
        ([{"not": []}], "filters[0].not: a filter must be an object with one dialect, got list"),
        ([{"not": {"sql": "1"}}], "filters[0].not: the sql dialect is not supported"),
        (
            [{"all": [{"any": [{"not": {"exact": {"X": "1"}}}]}]}],
            "filters[0].all[0].any[0].not.exact: attribute name",
        ),
    ],
)
def test_invalid_filters_are_refused_with_the_path_and_the_rule(filters, message):
    with pytest.raises(FilterError) as raised:
        validate_filters(filters)
    assert str(raised.value).startswith(message)


def test_filter_error_is_a_value_error_that_carries_the_path():
    with pytest.raises(ValueError) as raised:
        validate_filters([{"exact": {"type": "x"}}, {"not": {"exact": {"type": 3}}}])
    assert isinstance(raised.value, FilterError)
    assert raised.value.path == "filters[1].not.exact.type"
    assert raised.value.problem == "value must be a string, got int"


def test_nesting_deeper_than_the_limit_is_refused():
    deep: dict[str, Any] = {"exact": {"id": "1"}}
    for _ in range(32):
        deep = {"not": deep}
    with pytest.raises(FilterError, match="nested at most 32 levels deep"):
        validate_filters([deep])
    validate_filters([deep["not"]])  # one level less is fine


def test_longest_allowed_attribute_name_is_accepted():
    validate_filters([{"exact": {"a" * 20: "x", "specversion": "1.0", "a1": "y"}}])


def test_validate_filter_checks_one_expression():
    validate_filter({"any": [{"exact": {"type": "x"}}, {"not": {"suffix": {"subject": ".pdf"}}}]})
    with pytest.raises(FilterError, match=r'^filter\.any\[1\]\.exact: attribute name "Bad"'):
        validate_filter({"any": [{"exact": {"type": "x"}}, {"exact": {"Bad": "x"}}]})


def test_compiling_validates_first():
    with pytest.raises(FilterError, match="sql dialect is not supported"):
        compile_filters([{"sql": "true"}])
    with pytest.raises(FilterError, match=r"^filter: unknown dialect"):
        compile_filter({"lua": "return true"})
    with pytest.raises(FilterError):
        matches([{"all": []}], ORDER_CREATED)


# --------------------------------------------------------------------------------------------
# Properties

NAMES = ["type", "source", "subject", "region"]
VALUES = ["a", "ab", "abc", "b", "ba", "1", "true"]

leaf_filters = st.builds(
    lambda dialect, entries: {dialect: entries},
    st.sampled_from(["exact", "prefix", "suffix"]),
    st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), min_size=1, max_size=2),
)
filters_strategy = st.recursive(
    leaf_filters,
    lambda children: st.one_of(
        st.builds(lambda fs: {"all": fs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda fs: {"any": fs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda f: {"not": f}, children),
    ),
    max_leaves=8,
)
attributes_strategy = st.dictionaries(
    st.sampled_from(NAMES),
    st.one_of(st.sampled_from(VALUES), st.sampled_from([True, 1, 12, None])),
    max_size=4,
)


def reference(filter_: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """A plain tree-walking interpreter of the spec, to check the compiled closures against."""
    ((dialect, argument),) = filter_.items()
    if dialect == "all":
        return all(reference(item, attributes) for item in argument)
    if dialect == "any":
        return any(reference(item, attributes) for item in argument)
    if dialect == "not":
        return not reference(argument, attributes)
    for name, expected in argument.items():
        value = attributes.get(name)
        if value is None:
            return False
        text = {True: "true", False: "false"}[value] if isinstance(value, bool) else str(value)
        if dialect == "exact" and text != expected:
            return False
        if dialect == "prefix" and not text.startswith(expected):
            return False
        if dialect == "suffix" and not text.endswith(expected):
            return False
    return True


@given(filters_strategy, attributes_strategy)
def test_compiled_filters_agree_with_a_tree_walking_reference(filter_, attributes):
    validate_filter(filter_)
    assert compile_filter(filter_)(attributes) == reference(filter_, attributes)


@given(filters_strategy, attributes_strategy)
def test_not_not_f_is_f(filter_, attributes):
    assert compile_filter({"not": {"not": filter_}})(attributes) == compile_filter(filter_)(attributes)


@given(filters_strategy, attributes_strategy)
def test_all_of_one_filter_is_that_filter(filter_, attributes):
    assert compile_filter({"all": [filter_]})(attributes) == compile_filter(filter_)(attributes)


@given(st.lists(filters_strategy, min_size=1, max_size=4), attributes_strategy)
def test_any_is_the_negation_of_all_of_the_negations(filters, attributes):
    de_morgan = {"not": {"all": [{"not": f} for f in filters]}}
    assert compile_filter({"any": filters})(attributes) == compile_filter(de_morgan)(attributes)


@given(st.lists(filters_strategy, max_size=4), attributes_strategy)
def test_a_filter_list_is_the_all_of_its_filters(filters, attributes):
    expected = all(reference(f, attributes) for f in filters)
    assert compile_filters(filters)(attributes) == expected
    assert matches(filters, attributes) == expected
    if filters:
        assert compile_filter({"all": filters})(attributes) == expected
