"""The MeshConfig document: canonical JSON, checksum, seal, validation and loading.

The contract is docs/meshconfig.md; the JSON Schema is ``schema/meshconfig-1.json`` beside this
module. This module is the single place where both sides check a document: the portal calls
:func:`seal` and :func:`validate_document` after compiling, and publishes with
:mod:`meshruntime.config_publish`; a runtime's :class:`~meshruntime.config_watcher.ConfigWatcher`
refuses anything :func:`validate_document` refuses.

Pure (no I/O beyond :func:`load_file`, no asyncio, no Redis), and no Django: the portal imports
this module, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from jsonschema.exceptions import best_match

from meshruntime.filters import FilterError, validate_filters
from meshruntime.policy import PolicyError, topic_name_folded, validate_pattern
from meshruntime.schema import DATA_SCHEMA_SUBSET_PATH, MESHCONFIG_SCHEMA_PATH, compile_checker, load_schema

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "FORMAT",
    "SCHEMA",
    "SCHEMA_PATH",
    "UNCHECKED_FIELDS",
    "ConfigError",
    "canonical_json",
    "compute_checksum",
    "load_file",
    "parse_document",
    "seal",
    "validate_document",
]

FORMAT = 1
SCHEMA_PATH = MESHCONFIG_SCHEMA_PATH
SCHEMA: dict[str, Any] = load_schema(SCHEMA_PATH)

# Fields that describe a publication rather than the content: the checksum leaves them out, so
# compiling an unchanged database gives the same checksum, and a rollback keeps its old one.
UNCHECKED_FIELDS = frozenset({"version", "checksum", "generated_at"})

# Compiled once: building a validator resolves every $ref, which costs more than a small check.
# Format assertions stay off (the schema uses patterns), so results do not depend on which
# optional format libraries happen to be installed.
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# jsonschema needs ~15 s for a document of 10,000 topics and 10,000 rules; this compiled check
# needs well under one, and is never more lenient (see meshruntime.schema). jsonschema keeps the
# final word, and writes the message, whenever the fast check says no.
_FAST_CHECK = compile_checker(SCHEMA)
_MAX_MESSAGE = 400

# The largest document a runtime reads unless told otherwise (``--max-config-bytes``); a mesh of
# 10,000 topics, 10,000 rules and 2,000 subscriptions is under 4 MB, one of 100,000 topics and as
# many rules about 30 MB. Parsing JSON holds the interpreter lock whichever thread does it
# (orjson: 20-35 ms a megabyte on a small machine), so the limit is what bounds that pause of a
# runtime's event loop; a longer document is refused by its length, unread.
DEFAULT_MAX_DOCUMENT_BYTES = 32 << 20


class ConfigError(ValueError):
    """A document that must not be applied. The message starts with the failing path."""


# --------------------------------------------------------------------------------------------
# Checksum


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON of ``obj``, as the contract spells it (docs/meshconfig.md, "Checksum"):
    UTF-8, keys sorted, no whitespace, as orjson writes it (a tenth of the time ``json`` takes,
    which a whole mesh's checksum feels). Raises :class:`ConfigError` for what JSON cannot carry
    exactly (an integer beyond 64 bits, a key that is not a string).
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as error:
        raise ConfigError(f"(document): not canonical JSON: {error}") from None


def compute_checksum(doc: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the document's canonical JSON without version, checksum and generated_at."""
    content = {key: value for key, value in doc.items() if key not in UNCHECKED_FIELDS}
    return hashlib.sha256(canonical_json(content)).hexdigest()


def seal(doc: Mapping[str, Any], version: int, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """A copy of ``doc`` with ``version``, ``generated_at`` (now, UTC) and its ``checksum`` set.

    The header fields come first so that a stored snapshot reads like the contract's example.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    when = (generated_at or datetime.now(UTC)).astimezone(UTC)
    body = {key: value for key, value in doc.items() if key not in UNCHECKED_FIELDS}
    body.setdefault("format", FORMAT)
    checksum = compute_checksum(body)
    return {
        "format": body.pop("format"),
        "version": version,
        "checksum": checksum,
        "generated_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **body,
    }


# --------------------------------------------------------------------------------------------
# Validation


def _path(parts: Iterable[str | int]) -> str:
    """``["topics", 3, "name"]`` -> ``topics[3].name``; the empty path is the document itself."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


@lru_cache(maxsize=16)
def _metaschema_validator(cls: type[jsonschema.protocols.Validator]) -> jsonschema.protocols.Validator:
    """What ``cls.check_schema`` builds on every call (format checks included, so that a broken
    regular expression in ``pattern`` is caught); built once per draft, it is twice as fast."""
    return cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)


# The full metaschema costs about a millisecond per schema, ten seconds for 10,000 topics on a
# runtime's first validation. Ordinary data schemas fit a strict subset of it, which compiles
# to fast code (see data-schema-subset.json); only the others pay for the metaschema.
_SUBSET_CHECK = compile_checker(load_schema(DATA_SCHEMA_SUBSET_PATH))
# The subset leaves "pattern" to a re.compile of its own, which is what jsonschema's "regex"
# format check does, unless an ECMA-262 checker (the regress package) has replaced it.
_REGEX_IS_PYTHONS = jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers["regex"][0] is getattr(
    getattr(jsonschema, "_format", None), "is_regex", None
)


def _plainly_valid(schema: Any) -> bool:
    """True only if ``schema`` is certainly a valid 2020-12 schema; False means "ask jsonschema"."""
    if not _REGEX_IS_PYTHONS or not _SUBSET_CHECK(schema):
        return False
    stack = [schema]
    while stack:  # every "pattern" string anywhere, keyword or not: compiling extra is harmless
        node = stack.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error:
                    return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


@lru_cache(maxsize=65_536)
def _schema_problem(schema_json: bytes) -> str | None:
    """Why a topic's data schema is not a valid JSON Schema, or None.

    Cached by the schema's text: the portal validates every compiled document, and from one
    version to the next almost every schema is unchanged.
    The draft is the one the schema declares in ``$schema``, 2020-12 when it declares none.
    """
    schema = json.loads(schema_json)
    if _plainly_valid(schema):
        return None
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    meta = _metaschema_validator(cls)
    if meta.is_valid(schema):
        return None
    error = best_match(meta.iter_errors(schema))
    where = _path(error.absolute_path)
    return f"not a valid JSON Schema: {error.message}" + ("" if where == "(document)" else f" at {where}")


def validate_document(doc: Any) -> dict[str, Any]:
    """Return ``doc`` if a runtime may apply it; raise :class:`ConfigError` naming the culprit.

    Order: the schema (shape, patterns, enums, ranges), then the checksum, then what a schema
    cannot say: unique names and ids, cross references, filters, topic data schemas.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"(document): must be a JSON object, got {type(doc).__name__}")
    # Only a document the fast check refuses pays for jsonschema, which then decides and says
    # why; best_match picks the most relevant of its errors.
    error = None if _FAST_CHECK(doc) else best_match(_VALIDATOR.iter_errors(doc))
    if error is not None:
        message = error.message
        if len(message) > _MAX_MESSAGE:  # jsonschema quotes the whole offending value
            message = message[: _MAX_MESSAGE - 1] + "…"
        raise ConfigError(f"{_path(error.absolute_path)}: {message}")
    expected = compute_checksum(doc)
    if doc["checksum"] != expected:
        raise ConfigError(f"checksum: {doc['checksum']} does not match the content (its checksum is {expected})")
    _check_references(doc)
    return doc


def _unique(items: list[dict[str, Any]], field: str, section: str) -> dict[str, int]:
    """Index ``items`` by ``field``; a duplicate is an error that names both places."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        value = item[field]
        if value in seen:
            raise ConfigError(f"{section}[{index}].{field}: {value!r} is already used by {section}[{seen[value]}]")
        seen[value] = index
    return seen


def _check_filters(filters: list[Any], path: str) -> None:
    try:
        validate_filters(filters, path)
    except FilterError as error:
        raise ConfigError(str(error)) from None


def _check_pattern(pattern: str, path: str) -> None:
    # The schema already has the same regular expression; asking the policy module as well keeps
    # "what is a pattern" in one place should the evaluator ever grow a rule the regex lacks.
    try:
        validate_pattern(pattern)
    except PolicyError as error:
        raise ConfigError(f"{path}: {error}") from None


def _check_mqtt_target(doc: dict[str, Any], delivery: dict[str, Any], subscription: dict[str, Any],
                       path: str) -> None:
    """``mqtt://<store>/<topic>``: an MQTT store of the document; structured mode (MQTT 3.1.1
    has no headers for the attributes); no reply can come back from it."""
    store = delivery["url"][len("mqtt://"):].partition("/")[0]
    kinds = {entry["name"]: entry["kind"] for entry in doc["stores"]}
    if kinds.get(store) != "mqtt":
        raise ConfigError(f"{path}.delivery.url: {store!r} is not an MQTT store of the document "
                          f"({'it is ' + kinds[store] if store in kinds else 'no store has that name'})")
    if delivery["mode"] != "structured":
        raise ConfigError(f"{path}.delivery.mode: an MQTT target takes structured mode (MQTT carries no headers "
                          "for the event's attributes)")
    if subscription.get("responder"):
        raise ConfigError(f"{path}.responder: an MQTT target cannot answer requests")


def _check_references(doc: dict[str, Any]) -> None:
    stores = _unique(doc["stores"], "name", "stores")
    topics = _unique(doc["topics"], "name", "topics")
    applications = _unique(doc["applications"], "name", "applications")
    _unique(doc["access_rules"], "id", "access_rules")
    subscriptions = _unique(doc["subscriptions"], "id", "subscriptions")
    _unique(doc["routing_rules"], "id", "routing_rules")

    folded: dict[str, int] = {}
    for index, topic in enumerate(doc["topics"]):
        other = folded.setdefault(topic_name_folded(topic["name"]), index)
        if other != index:
            raise ConfigError(f"topics[{index}].name: {topic['name']!r} differs only in case from "
                              f"topics[{other}] {doc['topics'][other]['name']!r}")
        if topic["store"] not in stores:
            raise ConfigError(f"topics[{index}].store: no store named {topic['store']!r}")
        if topic["schema"] is not None:
            problem = _schema_problem(canonical_json(topic["schema"]))
            if problem:
                raise ConfigError(f"topics[{index}].schema: {problem}")

    # Runtimes find a key by its prefix, so a prefix must lead to exactly one key.
    prefixes: dict[str, str] = {}
    for index, application in enumerate(doc["applications"]):
        for key_index, key in enumerate(application["keys"]):
            path = f"applications[{index}].keys[{key_index}]"
            if key["prefix"] in prefixes:
                owner = prefixes[key["prefix"]]
                raise ConfigError(f"{path}.prefix: {key['prefix']!r} is already used by {owner}")
            prefixes[key["prefix"]] = path

    for index, rule in enumerate(doc["access_rules"]):
        path = f"access_rules[{index}]"
        principals = rule["principals"]
        for p_index, name in enumerate([] if principals == "*" else principals):
            if name != "*" and name not in applications:
                raise ConfigError(f"{path}.principals[{p_index}]: no application named {name!r}")
        _check_pattern(rule["topic"], f"{path}.topic")
        # A topic named by an exact rule need not exist: a rule may be written before its topic,
        # and a rule about a missing topic grants nothing.
        if rule["id"].startswith("sub-") and rule["id"] not in subscriptions:
            raise ConfigError(f"{path}.id: {rule['id']!r} is a subscription's grant, but no subscription has that id")

    responders: dict[str, int] = {}
    for index, subscription in enumerate(doc["subscriptions"]):
        path = f"subscriptions[{index}]"
        if subscription["topic"] not in topics:
            raise ConfigError(f"{path}.topic: no topic named {subscription['topic']!r}")
        if subscription.get("responder"):
            other = responders.setdefault(subscription["topic"], index)
            if other != index:
                first = f"subscriptions[{other}] ({doc['subscriptions'][other]['id']})"
                raise ConfigError(f"{path}.responder: topic {subscription['topic']!r} already has a responder, "
                                  f"{first}; a topic has at most one")
        if subscription["application"] not in applications:
            raise ConfigError(f"{path}.application: no application named {subscription['application']!r}")
        delivery = subscription["delivery"]
        if delivery["backoff_cap_ms"] < delivery["backoff_base_ms"]:
            raise ConfigError(
                f"{path}.delivery.backoff_cap_ms: {delivery['backoff_cap_ms']} is less than "
                f"backoff_base_ms {delivery['backoff_base_ms']}"
            )
        if delivery["url"].startswith("mqtt://"):
            _check_mqtt_target(doc, delivery, subscription, path)
        _check_filters(subscription["filters"], f"{path}.filters")

    for index, route in enumerate(doc["routing_rules"]):
        path = f"routing_rules[{index}]"
        _check_pattern(route["source"], f"{path}.source")
        for t_index, target in enumerate(route["targets"]):
            if target not in topics:
                raise ConfigError(f"{path}.targets[{t_index}]: no topic named {target!r}")
        _check_filters(route["filters"], f"{path}.filters")


def parse_document(data: bytes | str, *, source: str = "document") -> dict[str, Any]:
    """Parse JSON bytes and validate them; a parse error is a :class:`ConfigError` too."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"(document): {source} is not valid JSON: {error}") from None
    return validate_document(doc)


def load_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> dict[str, Any]:
    """Read, parse and validate a document from a file (a runtime's cache, a fixture, a CLI);
    a file over ``max_bytes`` is refused unread."""
    path = Path(path)
    if max_bytes is not None:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"(document): {path} is {size} bytes, over the limit of {max_bytes}")
    return parse_document(path.read_bytes(), source=str(path))
