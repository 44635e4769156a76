"""meshruntime.config and config_publish: checksum, sealing, validation and publishing of the MeshConfig document."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from factories import ORDER_SCHEMA, access_rule, app_key, application, key_for, make_config, subscription, topic

from meshruntime.config import (
    SCHEMA,
    ConfigError,
    canonical_json,
    compute_checksum,
    load_file,
    seal,
    validate_document,
)
from meshruntime.config_publish import publish_document
from meshruntime.schema import UnsupportedSchema, compile_checker


def reversed_keys(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


def resealed(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """The sample document changed by ``change`` and sealed again, so only ``change`` can be wrong."""
    doc = make_config()
    change(doc)
    return seal(doc, doc["version"])


# --------------------------------------------------------------------------------------------
# Checksum and seal


def test_canonical_json_is_the_contracts_spelling() -> None:
    assert canonical_json({"b": [1, {"d": None, "c": True}], "a": "é"}) == (
        '{"a":"é","b":[1,{"c":true,"d":null}]}'.encode()
    )


def test_checksum_ignores_key_order() -> None:
    doc = make_config()
    assert list(reversed_keys(doc)) != list(doc)
    assert compute_checksum(reversed_keys(doc)) == compute_checksum(doc)


def test_checksum_ignores_version_and_generation_time() -> None:
    doc = make_config()
    other = {**doc, "version": 99, "generated_at": "2030-01-01T00:00:00Z", "checksum": "f" * 64}
    assert compute_checksum(other) == compute_checksum(doc)


def test_checksum_changes_with_content() -> None:
    doc = make_config()
    changed = copy.deepcopy(doc)
    changed["topics"][0]["retention"]["max_length"] += 1
    assert compute_checksum(changed) != compute_checksum(doc)


def test_checksum_is_sha256_of_the_canonical_content() -> None:
    doc = make_config()
    content = {key: value for key, value in doc.items() if key not in ("version", "checksum", "generated_at")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert doc["checksum"] == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_canonical_numbers_are_spelled_as_the_contract_says() -> None:
    # Where orjson and Python's json differ, the contract follows orjson (docs/meshconfig.md).
    assert canonical_json({"a": [1e16, 1.5e-7, 0.1, 100.0, -0.0, 2**63 - 1]}) == (
        b'{"a":[1e+16,1.5e-7,0.1,100.0,-0.0,9223372036854775807]}'  # Python's json: 1.5e-07
    )


def test_what_canonical_json_cannot_carry_exactly_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^\(document\): not canonical JSON: Integer exceeds 64-bit range"):
        canonical_json({"maximum": 2**64})


def test_seal_sets_the_header_without_touching_its_input() -> None:
    body = make_config(sealed=False)
    before = copy.deepcopy(body)
    sealed = seal(body, 42, generated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert body == before
    assert list(sealed)[:4] == ["format", "version", "checksum", "generated_at"]
    assert sealed["version"] == 42
    assert sealed["generated_at"] == "2026-01-02T03:04:05Z"
    assert sealed["checksum"] == compute_checksum(body)
    validate_document(sealed)


def test_seal_stamps_the_current_time_by_default() -> None:
    sealed = seal(make_config(sealed=False), 1)
    stamped = datetime.strptime(sealed["generated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 5


def test_a_rollback_keeps_the_old_checksum_under_a_new_version() -> None:
    old = make_config(version=3)
    rollback = seal(old, 9)
    assert rollback["version"] == 9
    assert rollback["checksum"] == old["checksum"]


@pytest.mark.parametrize("version", [0, -1, True, "3", 1.0])
def test_seal_refuses_a_version_that_is_not_a_positive_integer(version: Any) -> None:
    with pytest.raises(ValueError, match="version"):
        seal(make_config(), version)


# --------------------------------------------------------------------------------------------
# Valid documents


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["additionalProperties"] is False


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(make_config(), id="sample"),
        pytest.param(make_config(bare=True), id="bare"),
        pytest.param(make_config(bare=True, stores=[]), id="nothing at all"),
        pytest.param(
            make_config(
                topics=[
                    topic("audit.orders"),
                    topic(
                        "orders.created",
                        lifecycle="deprecated",
                        sunset="2027-01-31",
                        retention={"max_age_seconds": None, "max_length": None},
                    ),
                ]
            ),
            id="deprecated topic, unbounded retention",
        ),
        pytest.param(
            make_config(
                access_rules=[
                    access_rule("rule-1", "*", "*", ["publish"]),
                    access_rule("rule-2", ["*"], "orders.created", ["subscribe"]),
                ]
            ),
            id="everyone as * and [*]",
        ),
        pytest.param(
            make_config(
                applications=[
                    application("auditor"),
                    application("shipping"),
                    application("billing", keys=["Ab3dE9xQ", app_key("Zz000000", expires_at="2027-01-01T00:00:00Z")]),
                ]
            ),
            id="two keys, one expiring",
        ),
        pytest.param(
            make_config(
                subscriptions=[
                    subscription(
                        "sub-1",
                        "orders.created",
                        "shipping",
                        state="paused",
                        delivery={"mode": "structured"},
                        filters=[{"not": {"prefix": {"source": "/test"}}}],
                    )
                ]
            ),
            id="paused structured subscription with filters",
        ),
    ],
)
def test_it_accepts_valid_documents(doc: dict[str, Any]) -> None:
    assert validate_document(doc) is doc


def test_key_for_matches_the_hash_in_the_document() -> None:
    doc = make_config()
    billing = next(app for app in doc["applications"] if app["name"] == "billing")
    (key,) = billing["keys"]
    plain = key_for("billing")
    assert plain.startswith(f"mk_{key['prefix']}_") and len(plain) == 3 + 8 + 1 + 40
    assert hashlib.sha256(plain.encode()).hexdigest() == key["sha256"]


# --------------------------------------------------------------------------------------------
# Every kind of error names its path


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``path`` (``topics.1.name``) to ``value``."""

    def change(doc: dict[str, Any]) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        target = doc
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        target = doc
        for part in parents:
            target = target[part]
        del target[last]

    return change


SCHEMA_ERRORS = [
    # (change, the message starts with, and contains)
    (_set("format", 2), "format:", "1 was expected"),
    (_set("surprise", True), "(document):", "'surprise' was unexpected"),
    (_delete("topics"), "(document):", "'topics' is a required property"),
    (_set("stores.0.kind", "Redis Cluster"), "stores[0].kind:", "does not match"),
    (_set("topics.1.name", "Orders Created"), "topics[1].name:", "does not match"),
    (_set("topics.1.name", "orders..created"), "topics[1].name:", "does not match"),
    (_set("topics.1.name", "a" * 250), "topics[1].name:", "is too long"),
    (_set("topics.1.colour", "red"), "topics[1]:", "'colour' was unexpected"),
    (_delete("topics.1.retention"), "topics[1]:", "'retention' is a required property"),
    (_set("topics.1.lifecycle", "retired"), "topics[1].lifecycle:", "is not one of"),
    (_set("topics.1.sunset", "next week"), "topics[1].sunset:", "does not match"),
    (_set("topics.1.retention.max_length", 0), "topics[1].retention.max_length:", "minimum"),
    (_set("topics.1.schema", "a string"), "topics[1].schema:", "is not of type"),
    (_set("applications.1.name", "bill ing"), "applications[1].name:", "does not match"),
    (_set("applications.1.keys.0.prefix", "short"), "applications[1].keys[0].prefix:", "does not match"),
    (_set("applications.1.keys.0.sha256", "A" * 64), "applications[1].keys[0].sha256:", "does not match"),
    (_set("applications.1.keys.0.secret", "x"), "applications[1].keys[0]:", "'secret' was unexpected"),
    (
        _set("applications.1.keys.0.expires_at", "tomorrow"),
        "applications[1].keys[0].expires_at:",
        "does not match",
    ),
    (_set("access_rules.0.id", "rule-one"), "access_rules[0].id:", "does not match"),
    (_set("access_rules.0.effect", "maybe"), "access_rules[0].effect:", "is not one of"),
    (_set("access_rules.0.actions", ["publish", "delete"]), "access_rules[0].actions[1]:", "is not one of"),
    (_set("access_rules.0.actions", []), "access_rules[0].actions:", "should be non-empty"),
    (_set("access_rules.0.topic", "orders.*.created"), "access_rules[0].topic:", "does not match"),
    (_set("access_rules.0.principals", []), "access_rules[0].principals:", ""),
    (_set("access_rules.0.principals", ["*", "billing"]), "access_rules[0].principals[0]:", "does not match"),
    (_set("subscriptions.0.id", "subscription-1"), "subscriptions[0].id:", "does not match"),
    (_set("subscriptions.0.state", "revoked"), "subscriptions[0].state:", "is not one of"),
    (_set("subscriptions.0.topic", "orders.*"), "subscriptions[0].topic:", "does not match"),
    (_set("subscriptions.0.delivery.mode", "batch"), "subscriptions[0].delivery.mode:", "is not one of"),
    (_set("subscriptions.0.delivery.url", "ftp://x/y"), "subscriptions[0].delivery.url:", "does not match"),
    (_set("subscriptions.0.delivery.timeout_ms", 10), "subscriptions[0].delivery.timeout_ms:", "minimum"),
    (_set("subscriptions.0.delivery.max_attempts", 0), "subscriptions[0].delivery.max_attempts:", "minimum"),
    (
        _set("subscriptions.0.delivery.max_in_flight", 10_000),
        "subscriptions[0].delivery.max_in_flight:",
        "maximum",
    ),
    (
        _set("subscriptions.0.delivery.timeout_ms", 5000.5),
        "subscriptions[0].delivery.timeout_ms:",
        "is not of type 'integer'",
    ),
    (_set("subscriptions.0.secret", ""), "subscriptions[0].secret:", "should be non-empty"),
    (_set("subscriptions.0.filters", {"exact": {}}), "subscriptions[0].filters:", "is not of type 'array'"),
    (_set("routing_rules.0.id", "route-x"), "routing_rules[0].id:", "does not match"),
    (_set("routing_rules.0.targets", []), "routing_rules[0].targets:", "should be non-empty"),
    (_set("routing_rules.0.targets", ["audit.*"]), "routing_rules[0].targets[0]:", "does not match"),
    (_set("routing_rules.0.order", "first"), "routing_rules[0].order:", "is not of type 'integer'"),
    (_set("routing_rules.0.enabled", True), "routing_rules[0]:", "'enabled' was unexpected"),
]


@pytest.mark.parametrize(("change", "starts", "says"), SCHEMA_ERRORS)
def test_schema_errors_name_their_path(change: Callable[[dict[str, Any]], None], starts: str, says: str) -> None:
    doc = resealed(change)
    with pytest.raises(ConfigError) as caught:
        validate_document(doc)
    message = str(caught.value)
    assert message.startswith(starts + " "), message
    assert says in message


def _append(section: str, entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc[section].append(entry)


REFERENCE_ERRORS = [
    (
        _append("stores", {"name": "default", "kind": "nats"}),
        "stores[1].name: 'default' is already used by stores[0]",
    ),
    (
        _append("topics", topic("orders.created")),
        "topics[3].name: 'orders.created' is already used by topics[1]",
    ),
    (
        _append("applications", application("billing")),
        "applications[3].name: 'billing' is already used by applications[1]",
    ),
    (
        _append("access_rules", access_rule("rule-2", "*", "*")),
        "access_rules[4].id: 'rule-2' is already used by access_rules[1]",
    ),
    (
        _append("subscriptions", subscription("sub-1", "orders.shipped", "billing")),
        "subscriptions[1].id: 'sub-1' is already used by subscriptions[0]",
    ),
    (
        _append(
            "routing_rules",
            {"id": "route-1", "source": "*", "filters": [], "targets": ["audit.orders"], "order": 1},
        ),
        "routing_rules[1].id: 'route-1' is already used by routing_rules[0]",
    ),
    (_set("topics.2.store", "nats-eu"), "topics[2].store: no store named 'nats-eu'"),
    (
        _set("subscriptions.0.topic", "orders.cancelled"),
        "subscriptions[0].topic: no topic named 'orders.cancelled'",
    ),
    (
        _set("subscriptions.0.application", "ghost"),
        "subscriptions[0].application: no application named 'ghost'",
    ),
    (
        _set("access_rules.0.principals", ["billing", "ghost"]),
        "access_rules[0].principals[1]: no application named 'ghost'",
    ),
    (
        _append("access_rules", access_rule("sub-9", ["billing"], "orders.created", ["subscribe"])),
        "access_rules[4].id: 'sub-9' is a subscription's grant, but no subscription has that id",
    ),
    (
        _set("routing_rules.0.targets", ["audit.orders", "audit.payments"]),
        "routing_rules[0].targets[1]: no topic named 'audit.payments'",
    ),
    (
        _set("applications.2.keys", [app_key(make_config()["applications"][0]["keys"][0]["prefix"])]),
        "applications[2].keys[0].prefix: ",
    ),
    (
        _set("subscriptions.0.delivery.backoff_cap_ms", 100),
        "subscriptions[0].delivery.backoff_cap_ms: 100 is less than backoff_base_ms 200",
    ),
    (
        _set("subscriptions.0.filters", [{"exact": {"type": "x"}}, {"sql": "type = 'x'"}]),
        "subscriptions[0].filters[1]: the sql dialect is not supported",
    ),
    (_set("routing_rules.0.filters", [{"any": []}]), "routing_rules[0].filters[0].any: "),
    (_set("topics.1.schema", {"type": "order"}), "topics[1].schema: not a valid JSON Schema"),
    (
        _set("topics.1.schema", {"properties": {"id": {"minLength": -1}}}),
        "topics[1].schema: not a valid JSON Schema",
    ),
]


@pytest.mark.parametrize(("change", "starts"), REFERENCE_ERRORS)
def test_reference_errors_name_their_path(change: Callable[[dict[str, Any]], None], starts: str) -> None:
    doc = resealed(change)
    with pytest.raises(ConfigError) as caught:
        validate_document(doc)
    assert str(caught.value).startswith(starts), str(caught.value)


def test_a_shared_key_prefix_names_the_first_owner() -> None:
    doc = make_config(
        applications=[
            "auditor",
            "shipping",
            {"name": "billing", "keys": ["Ab3dE9xQ"]},
            {"name": "intruder", "keys": ["Ab3dE9xQ"]},
        ]
    )
    with pytest.raises(
        ConfigError,
        match=r"^applications\[3\]\.keys\[0\]\.prefix: 'Ab3dE9xQ' is already used by "
        r"applications\[2\]\.keys\[0\]$",
    ):
        validate_document(doc)


def test_it_refuses_a_checksum_that_does_not_match() -> None:
    doc = make_config()
    doc["topics"][0]["retention"]["max_length"] = 5  # changed after sealing
    with pytest.raises(ConfigError, match=r"^checksum: [0-9a-f]{64} does not match the content"):
        validate_document(doc)


def test_it_refuses_what_is_not_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^\(document\): must be a JSON object, got list"):
        validate_document([make_config()])


def test_topic_schema_check_follows_the_declared_draft() -> None:
    # In draft-04 "exclusiveMinimum" is a boolean; in 2020-12 it is a number.
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "minimum": 1, "exclusiveMinimum": True}
    validate_document(resealed(_set("topics.1.schema", draft4)))
    with pytest.raises(ConfigError, match=r"^topics\[1\]\.schema: not a valid JSON Schema"):
        validate_document(resealed(_set("topics.1.schema", {"minimum": 1, "exclusiveMinimum": True})))


# --------------------------------------------------------------------------------------------
# Files


def test_load_file_reads_and_validates(tmp_path) -> None:
    path = tmp_path / "config.json"
    doc = make_config(version=4)
    path.write_bytes(canonical_json(doc))
    assert load_file(path) == doc


def test_load_file_names_the_file_when_it_is_not_json(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"format": 1,')
    with pytest.raises(ConfigError, match=rf"^\(document\): {path} is not valid JSON"):
        load_file(path)


def test_load_file_refuses_a_tampered_document(tmp_path) -> None:
    doc = make_config()
    doc["applications"][0]["team"] = "someone-else"
    path = tmp_path / "config.json"
    path.write_bytes(canonical_json(doc))
    with pytest.raises(ConfigError, match="^checksum: "):
        load_file(path)


# --------------------------------------------------------------------------------------------
# Publishing


def _next_message(pubsub, timeout: float = 5.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            return message
    return None


def test_publish_writes_the_snapshot_then_latest_then_announces(redis_client, key_prefix, keys) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.config_channel)
    try:
        doc = make_config(version=7)
        assert publish_document(redis_client, doc, prefix=key_prefix) == 7
        assert json.loads(redis_client.get(keys.config(7))) == doc
        assert redis_client.get(keys.config_latest) == b"7"
        message = _next_message(pubsub)
        assert message is not None and message["data"] == b"7"
    finally:
        pubsub.close()


def test_publish_never_moves_latest_backwards(redis_client, key_prefix, keys) -> None:
    publish_document(redis_client, make_config(version=8), prefix=key_prefix)
    assert publish_document(redis_client, make_config(version=5), prefix=key_prefix) == 8
    assert redis_client.get(keys.config_latest) == b"8"
    assert redis_client.exists(keys.config(5))


def test_publish_refuses_an_invalid_document_unless_told_not_to_check(redis_client, key_prefix, keys) -> None:
    doc = make_config(version=3)
    doc["checksum"] = "0" * 64
    with pytest.raises(ConfigError, match="^checksum: "):
        publish_document(redis_client, doc, prefix=key_prefix)
    assert redis_client.get(keys.config_latest) is None
    assert publish_document(redis_client, doc, prefix=key_prefix, check=False) == 3


# --------------------------------------------------------------------------------------------
# The compiled fast check never says yes where jsonschema says no


FAST_CHECK = compile_checker(SCHEMA)


def _jsonschema_says(doc: Any) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)


@pytest.mark.parametrize(("change", "starts", "says"), SCHEMA_ERRORS)
def test_fast_check_refuses_each_schema_error(change, starts: str, says: str) -> None:
    doc = resealed(change)
    assert not _jsonschema_says(doc)
    assert not FAST_CHECK(doc)


def test_fast_check_accepts_what_jsonschema_accepts() -> None:
    for doc in (make_config(), make_config(bare=True), make_config(bare=True, stores=[])):
        assert _jsonschema_says(doc) and FAST_CHECK(doc)


_ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    2.5,
    2**40,
    "",
    "x",
    "*",
    "orders.*",
    "Ab3dE9xQ",
    "a" * 300,
    "2027-01-31",
    "2027-01-31T00:00:00Z",
    "allow",
    "publish",
    "binary",
    "active",
    "sub-3",
    "rule-3",
    "route-3",
    "https://x",
    ["*"],
    [],
    ["x"],
    ["x", "x"],
    ["publish"],
    {},
    {"x": 1},
    {"exact": {"a": "b"}},
]


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    return found


def test_fast_check_is_never_more_lenient_than_jsonschema_on_random_mutations() -> None:
    """Thousands of seeded mutations of the sample: replace, delete or add a member anywhere."""
    import random

    rng = random.Random(20261128)
    sample = make_config()
    paths = [path for path in _nodes(sample) if path]
    disagreements = []
    for _ in range(3000):
        doc = copy.deepcopy(sample)
        for _ in range(rng.choice((1, 1, 2))):
            *parents, last = rng.choice(paths)
            try:
                target = doc
                for part in parents:
                    target = target[part]
                kind = rng.random()
                if kind < 0.7:
                    target[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
                elif kind < 0.85:
                    del target[last]
                elif isinstance(target, dict):
                    target["extra"] = 1
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced that place
        fast, reference = FAST_CHECK(doc), _jsonschema_says(doc)
        assert not fast or reference, f"fast check accepted what jsonschema refuses: {doc}"
        if fast != reference:
            disagreements.append(doc)
    # Stricter is allowed (jsonschema then decides), but only for integral floats like 1.0.
    for doc in disagreements:
        assert any(isinstance(node, float) for node in _values(doc)), doc


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(v for item in value.values() for v in _values(item))]
    if isinstance(value, list):
        return [value, *(v for item in value for v in _values(item))]
    return [value]


def test_an_integral_float_is_decided_by_jsonschema() -> None:
    # The fast check says no to 5000.0 as an integer; jsonschema says yes, and has the last word.
    doc = resealed(_set("subscriptions.0.delivery.timeout_ms", 5000.0))
    assert not FAST_CHECK(doc)
    assert validate_document(doc) is doc


@pytest.mark.parametrize(
    "schema",
    [
        {"oneOf": [{}, {}]},
        {"not": {}},
        {"if": {}, "then": {}},
        {"properties": {"a": {"format": "email"}}},
        {"$ref": "https://example.com/other.json"},
    ],
)
def test_the_compiler_refuses_keywords_it_cannot_check_safely(schema: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_checker(schema)


def test_the_compiler_follows_recursive_refs() -> None:
    check = compile_checker(
        {
            "$ref": "#/$defs/node",
            "$defs": {
                "node": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                }
            },
        }
    )
    assert check({"children": [{"children": []}, {}]})
    assert not check({"children": [{"children": [{"leaf": 1}]}]})


# --------------------------------------------------------------------------------------------
# Topic data schemas: the fast subset never passes what the metaschema refuses


def _metaschema_says(schema: Any) -> bool:
    import jsonschema

    cls = jsonschema.Draft202012Validator
    return cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER).is_valid(schema)


def test_ordinary_data_schemas_take_the_fast_path() -> None:
    from meshruntime.config import _plainly_valid

    for schema in (
        ORDER_SCHEMA,
        True,
        {},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": ["object", "null"]},
        {
            "type": "object",
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-\\d+$"},
                "qty": {"type": "integer", "minimum": 1, "multipleOf": 1},
            },
            "required": ["sku"],
            "additionalProperties": False,
            "$defs": {"money": {"type": "number", "exclusiveMinimum": 0}},
        },
        {"oneOf": [{"$ref": "#/$defs/a"}, {"not": {"enum": [1, "x", None]}}], "$defs": {"a": {"const": 3}}},
    ):
        assert _plainly_valid(schema), schema
        assert _metaschema_says(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "order"},
        {"pattern": "(unclosed"},
        {"properties": {"a": {"pattern": "[z-a]"}}},
        {"minLength": -1},
        {"multipleOf": 0},
        {"required": ["a", "a"]},
        {"items": [{"type": "string"}]},
    ],
)
def test_invalid_data_schemas_are_refused_either_way(schema: dict[str, Any]) -> None:
    from meshruntime.config import _plainly_valid

    assert not _plainly_valid(schema)
    assert not _metaschema_says(schema)
    with pytest.raises(ConfigError, match=r"^topics\[1\]\.schema: not a valid JSON Schema"):
        validate_document(resealed(_set("topics.1.schema", schema)))


_SCHEMA_KEYWORDS = [
    "$schema",
    "$ref",
    "$defs",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "type",
    "enum",
    "const",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "uniqueItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "not",
    "allOf",
    "anyOf",
    "oneOf",
    "prefixItems",
    "if",
    "contentEncoding",
    "readOnly",
    "deprecated",
]
_SCHEMA_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    0.5,
    -0.5,
    2.0,
    "",
    "string",
    "object",
    "integer",
    "^a+$",
    "(",
    "[z-a]",
    "#/$defs/x",
    "#bad ref",
    "https://json-schema.org/draft/2020-12/schema",
    "http://json-schema.org/draft-04/schema#",
    [],
    ["a"],
    ["a", "a"],
    ["string", "null"],
    ["string", "string"],
    [{}],
    [True, {"type": "x"}],
    {},
    {"a": {}},
    {"a": {"type": "nope"}},
    {"a": True},
    {"type": "string"},
    {"minimum": "1"},
]


def _random_schema(rng, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.15:
        return rng.choice([True, False, {}, {"type": "string"}, copy.deepcopy(rng.choice(_SCHEMA_VALUES))])
    schema: dict[str, Any] = {}
    for _ in range(rng.randint(1, 4)):
        keyword = rng.choice(_SCHEMA_KEYWORDS)
        if keyword in ("properties", "$defs") and rng.random() < 0.7:
            schema[keyword] = {f"p{i}": _random_schema(rng, depth + 1) for i in range(rng.randint(0, 3))}
        elif keyword in ("allOf", "anyOf", "oneOf") and rng.random() < 0.7:
            schema[keyword] = [_random_schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        elif keyword in ("items", "not", "additionalProperties") and rng.random() < 0.7:
            schema[keyword] = _random_schema(rng, depth + 1)
        else:
            schema[keyword] = copy.deepcopy(rng.choice(_SCHEMA_VALUES))
    return schema


def test_the_fast_subset_is_never_more_lenient_than_the_metaschema() -> None:
    import random

    from meshruntime.config import _plainly_valid

    rng = random.Random(1128)
    fast_yes = 0
    for _ in range(3000):
        schema = _random_schema(rng)
        if _plainly_valid(schema):
            fast_yes += 1
            assert _metaschema_says(schema), schema
    assert fast_yes > 100  # the sample reaches the fast path often enough to mean something
