"""The applied configuration, compiled for the hot path.

A :class:`MeshState` is built once per MeshConfig document and never changes; the runtime swaps
the whole object when a new document is applied. A request reads ``runtime.state`` once and
uses that snapshot throughout, so a configuration change never mixes two versions in one
request and needs no lock.

Everything a publish needs is precomputed here: topics by name with their compiled JSON Schema
validators and retention, the routing rules that apply to each topic with their compiled
filters, application keys by prefix, and the indexed access policy.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import jsonschema
import orjson
from jsonschema.exceptions import best_match

from .filters import compile_filters
from .policy import Decision, Policy, pattern_matches
from .schema import UnsupportedSchema, compile_checker
from .store import Retention

log = logging.getLogger(__name__)

KEY_CACHE_SIZE = 4096
#: The CloudEvents extension a routed copy carries: the id of the routing rule that made it.
ROUTE_EXTENSION = "meshroute"


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """Why an event's data does not match its topic's schema."""

    path: str  # "data.items[0].price" ("data" for the document itself)
    pointer: str  # JSON Pointer into the data: "/items/0/price"
    message: str  # jsonschema's, which may quote the data
    keyword: str = ""  # the schema keyword that failed ("type", "required"): quotes nothing of the data


def _path(parts: Any) -> tuple[str, str]:
    text = "data"
    pointer = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
        pointer += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return text, pointer


_DECIMAL_REPR = re.compile(r"Decimal\('([^']*)'\)")


@cache
def _exact_numbers(cls: type) -> type:
    """``cls`` (a jsonschema validator class) for data whose numbers may be ``Decimal``, as the
    exact copy of data with numbers a double cannot hold is (``meshruntime.cloudevents``): an
    integral Decimal is an integer, and ``multipleOf`` a float is computed in decimal."""
    base_type, base_multiple_of = cls.TYPE_CHECKER, cls.VALIDATORS["multipleOf"]

    def is_integer(checker: Any, instance: Any) -> bool:
        if isinstance(instance, Decimal):
            return instance == instance.to_integral_value()
        return base_type.is_type(instance, "integer")

    def multiple_of(validator: Any, divisor: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, Decimal) and isinstance(divisor, float):
            divisor = Decimal(repr(divisor))  # the number as the schema writes it
        return base_multiple_of(validator, divisor, instance, schema)

    return jsonschema.validators.extend(cls, validators={"multipleOf": multiple_of},
                                        type_checker=base_type.redefine("integer", is_integer))


class TopicSchema:
    """A topic's data schema, compiled once; ``check`` is the hot path.

    Valid data is recognised by generated Python code (``meshruntime.schema.compile_checker``,
    several times faster than ``jsonschema`` and never more lenient); ``jsonschema`` has the last
    word on anything else, and names the failing path. Schemas the fast checker cannot compile
    go to ``jsonschema`` directly.
    """

    __slots__ = ("_fast", "_validator")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        self._validator = _exact_numbers(cls)(schema)
        try:
            self._fast = compile_checker(dict(schema))
        except (UnsupportedSchema, KeyError, TypeError, ValueError):
            self._fast = self._validator.is_valid

    def check(self, data: Any) -> SchemaProblem | None:
        if self._fast(data) or self._validator.is_valid(data):
            return None
        error = best_match(self._validator.iter_errors(data))
        text, pointer = _path(error.absolute_path)
        message = _DECIMAL_REPR.sub(r"\1", error.message)  # an exact number as it was written
        message = message if len(message) <= 300 else message[:299] + "…"
        return SchemaProblem(text, pointer, message, str(error.validator or ""))

    def check_event_data(self, is_json: bool, value: Any) -> SchemaProblem | None:
        """:meth:`check` of an event's data as ``CloudEvent.json_data()`` gives it: data that is
        not JSON (or no data) fails at ``data``."""
        if not is_json:
            return SchemaProblem("data", "", "the schema requires JSON data; the event has none or other data",
                                 "type")
        return self.check(value)


@dataclass(frozen=True, slots=True)
class Route:
    """A routing rule as it applies to one source topic."""

    id: str
    matches: Callable[[Mapping[str, Any]], bool]
    targets: tuple[str, ...]
    # ``,"meshroute":"<id>"}``: put in place of an event's final brace, it makes the JSON of the
    # routed copy without serializing the event again
    json_member: bytes = b""
    # (target, its schema) for each target whose schema a copy must pass: those with a schema other
    # than the source topic's (an event that passed the source's schema passes the same schema)
    checks: tuple[tuple[str, TopicSchema], ...] = ()

    @classmethod
    def compile(cls, id: str, matches: Callable[[Mapping[str, Any]], bool], targets: tuple[str, ...],
                checks: tuple[tuple[str, TopicSchema], ...] = ()) -> Route:
        return cls(id, matches, targets, b"," + orjson.dumps(ROUTE_EXTENSION) + b":" + orjson.dumps(id) + b"}",
                   checks)


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    retention: Retention
    schema: TopicSchema | None
    routes: tuple[Route, ...]
    lifecycle: str = "active"
    sunset: str | None = None
    responder: str | None = None  # the subscription that answers requests (EventMesh's 101)
    responder_active: bool = False


@dataclass(frozen=True, slots=True)
class _Key:
    digest: str  # hex SHA-256 of the whole key
    application: str
    expires_at: float | None  # epoch seconds


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is, once its key is checked."""

    application: str
    team: str | None
    key_prefix: str


class AuthError(Exception):
    """A key that does not authenticate; the message says why without echoing the key."""


def _epoch(timestamp: str | None) -> float | None:
    if timestamp is None:
        return None
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@dataclass
class MeshState:
    """One applied MeshConfig document, compiled. Build it with :meth:`build`."""

    version: int
    checksum: str
    topics: dict[str, TopicState]
    policy: Policy
    applications: dict[str, str | None]  # name -> team
    keys: dict[str, tuple[_Key, ...]]
    bound_application: str | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False)
    _key_cache: OrderedDict[str, tuple[Identity, float | None]] = field(
        default_factory=OrderedDict, repr=False
    )

    @classmethod
    def build(cls, doc: dict[str, Any], *, application: str | None = None) -> MeshState:
        """Compile a validated document (``meshruntime.config.validate_document``).

        Raises on anything it cannot compile, so that the watcher refuses the document and the
        runtime keeps the previous state.
        """
        rules = sorted(doc.get("routing_rules", ()), key=lambda r: (r.get("order", 0), r["id"]))
        compiled_rules = [(rule, compile_filters(rule.get("filters", []))) for rule in rules]
        topic_names = {t["name"] for t in doc["topics"]}
        responders = {s["topic"]: (s["id"], s["state"] == "active")
                      for s in doc.get("subscriptions", ()) if s.get("responder")}
        raw_schemas = {t["name"]: t["schema"] for t in doc["topics"] if t.get("schema") is not None}
        schemas = {name: TopicSchema(schema) for name, schema in raw_schemas.items()}
        topics: dict[str, TopicState] = {}
        for topic in doc["topics"]:
            name = topic["name"]
            responder, responder_active = responders.get(name, (None, False))
            own_schema = raw_schemas.get(name)
            routes = []
            for rule, matcher in compiled_rules:
                if not pattern_matches(rule["source"], name):
                    continue
                # A copy never goes back to its own topic, and only to topics that exist.
                targets = tuple(t for t in rule["targets"] if t != name and t in topic_names)
                if targets:
                    # a copy into a topic with a schema passes it, as a publish there would
                    checks = tuple((t, schemas[t]) for t in targets if t in schemas and raw_schemas[t] != own_schema)
                    routes.append(Route.compile(rule["id"], matcher, targets, checks))
            topics[name] = TopicState(
                name=name,
                retention=Retention.from_config(topic.get("retention")),
                schema=schemas.get(name),
                routes=tuple(routes),
                lifecycle=topic.get("lifecycle", "active"),
                sunset=topic.get("sunset"),
                responder=responder,
                responder_active=responder_active,
            )
        keys: dict[str, list[_Key]] = {}
        applications: dict[str, str | None] = {}
        for app in doc["applications"]:
            applications[app["name"]] = app.get("team")
            for key in app.get("keys", ()):
                keys.setdefault(key["prefix"], []).append(
                    _Key(key["sha256"].lower(), app["name"], _epoch(key.get("expires_at")))
                )
        if application is not None and application not in applications:
            log.warning("config version %s has no application %r; this sidecar will refuse every key",
                        doc["version"], application)
        return cls(
            version=doc["version"],
            checksum=doc["checksum"],
            topics=topics,
            policy=Policy.from_rules(doc.get("access_rules", ())),
            applications=applications,
            keys={prefix: tuple(entries) for prefix, entries in keys.items()},
            bound_application=application,
            document=doc,
        )

    # -- authentication -------------------------------------------------------------------------
    def authenticate(self, key: str | None) -> Identity:
        """The application a key belongs to; raises :class:`AuthError`.

        Keys are ``mk_<prefix>_<secret>``: the prefix finds the candidates, the SHA-256 of the
        whole key is compared in constant time. Keys already seen are cached (per state, so a
        new configuration forgets them), but their expiry is checked every time.
        """
        if not key:
            raise AuthError("an application key is required (Authorization: Bearer mk_...)")
        now = time.time()
        cached = self._key_cache.get(key)
        if cached is not None:
            identity, expires_at = cached
            if expires_at is not None and now >= expires_at:
                raise AuthError(f"key {identity.key_prefix} has expired")
            return identity
        if len(key) < 13 or not key.startswith("mk_") or key[11] != "_":
            raise AuthError("the key is not a Meshadmin application key (mk_<prefix>_<secret>)")
        prefix = key[3:11]
        candidates = self.keys.get(prefix)
        if not candidates:
            raise AuthError(f"unknown key {prefix}")
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        for candidate in candidates:
            if hmac.compare_digest(candidate.digest, digest):
                break
        else:
            raise AuthError(f"key {prefix} does not match")
        if candidate.expires_at is not None and now >= candidate.expires_at:
            raise AuthError(f"key {prefix} has expired")
        if self.bound_application is not None and candidate.application != self.bound_application:
            raise AuthError(
                f"key {prefix} belongs to application {candidate.application!r}; "
                f"this runtime is the sidecar of {self.bound_application!r}"
            )
        identity = Identity(candidate.application, self.applications.get(candidate.application), prefix)
        self._key_cache[key] = (identity, candidate.expires_at)
        if len(self._key_cache) > KEY_CACHE_SIZE:
            self._key_cache.popitem(last=False)
        return identity

    # -- access ---------------------------------------------------------------------------------
    def may_publish(self, application: str, topic: str) -> bool:
        return self.policy.decide(application, topic, "publish")

    def explain_publish(self, application: str, topic: str) -> Decision:
        return self.policy.explain(application, topic, "publish")
