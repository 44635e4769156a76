"""The structural comparison behind the routing rule's save-time warning: where a target's schema
refuses data its source's schema admits (meshruntime.schema.compat). Each gap it reports is checked
against jsonschema with an instance the source accepts and the target refuses."""

from __future__ import annotations

import jsonschema
import pytest

from meshruntime.schema.compat import refused_by

ORDER = {"type": "object", "required": ["order_id"],
         "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}


def gaps(source, target) -> list[tuple[str, str]]:
    return [(gap.path, gap.keyword) for gap in refused_by(source, target)]


def admitted_and_refused(source, target, instance) -> bool:
    return jsonschema.Draft202012Validator(source).is_valid(instance) and \
        not jsonschema.Draft202012Validator(target).is_valid(instance)


@pytest.mark.parametrize(("target", "expected", "instance"), [
    ({**ORDER, "properties": {**ORDER["properties"], "amount": {"type": "integer"}}},
     [("data.amount", "type")], {"order_id": "o", "amount": 1.5}),
    ({**ORDER, "required": ["order_id", "amount"]}, [("data.amount", "required")], {"order_id": "o"}),
    ({**ORDER, "properties": {**ORDER["properties"], "amount": {"type": "number", "minimum": 0}}},
     [("data.amount", "minimum")], {"order_id": "o", "amount": -1}),
    ({**ORDER, "properties": {**ORDER["properties"], "order_id": {"type": "string", "maxLength": 8}}},
     [("data.order_id", "maxLength")], {"order_id": "o" * 9}),
    ({**ORDER, "properties": {**ORDER["properties"], "order_id": {"enum": ["a", "b"]}}},
     [("data.order_id", "enum")], {"order_id": "c"}),
    ({**ORDER, "additionalProperties": False}, [("data", "additionalProperties")], {"order_id": "o", "x": 1}),
    ({**ORDER, "properties": {**ORDER["properties"], "note": {"type": "string"}}},
     [("data.note", "type")], {"order_id": "o", "note": 3}),
    ({"type": "array"}, [("data", "type")], {"order_id": "o"}),
])
def test_each_gap_is_data_the_source_admits_and_the_target_refuses(target, expected, instance):
    assert gaps(ORDER, target) == expected
    assert admitted_and_refused(ORDER, target, instance)


@pytest.mark.parametrize("target", [
    ORDER,  # the same
    {"type": "object"},  # looser
    {**ORDER, "required": []},
    {**ORDER, "properties": {**ORDER["properties"], "amount": {"type": ["number", "null"]}}},
    {"type": "object", "properties": {"order_id": {"type": "string"}}},
    True, {},
])
def test_a_target_that_takes_whatever_the_source_admits_gives_no_gap(target):
    assert gaps(ORDER, target) == []


def test_an_integer_source_fits_a_number_target_not_the_other_way():
    assert gaps({"type": "integer"}, {"type": "number"}) == []
    assert gaps({"type": "number"}, {"type": "integer"}) == [("data", "type")]


def test_a_source_without_a_schema_admits_anything():
    [gap] = refused_by(None, ORDER)
    assert (gap.path, gap.keyword) == ("data", "schema") and "no schema" in gap.message
    assert refused_by(None, None) == [] and refused_by(ORDER, None) == []


def test_local_refs_are_followed_and_composed_schemas_left_alone():
    source = {"$defs": {"id": {"type": "string"}}, "type": "object",
              "properties": {"order_id": {"$ref": "#/$defs/id"}}}
    target = {"type": "object", "properties": {"order_id": {"type": "integer"}}}
    assert gaps(source, target) == [("data.order_id", "type")]
    composed = {"type": "object", "properties": {"order_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
    assert gaps(source, composed) == []  # not compared: it may miss a gap, it does not invent one


def test_items_of_arrays_are_compared():
    source = {"type": "array", "items": {"type": "number"}}
    target = {"type": "array", "items": {"type": "integer"}}
    assert gaps(source, target) == [("data[]", "type")]
    assert admitted_and_refused(source, target, [1.5])
