"""Builders of valid MeshConfig documents for tests (the contract: docs/meshconfig.md).

``make_config()`` gives a small, sealed, valid mesh::

    stores        default (redis)
    topics        audit.orders, orders.created (with a data schema), orders.shipped
    applications  billing (team payments), shipping (team logistics), auditor (team compliance),
                  one key each: key_for("billing") is billing's plain key
    access_rules  rule-1 allow billing publish orders.*
                  rule-2 allow auditor subscribe audit.*
                  rule-3 deny everyone publish audit.*
                  sub-1  allow shipping subscribe orders.created (the grant of sub-1)
    subscriptions sub-1 shipping <- orders.created, webhook http://127.0.0.1:9/hooks/orders
    routing_rules route-1 orders.* -> audit.orders

Override any list; its entries may be names (``topics=["a.b"]``) or partial dicts merged over
the defaults (``subscriptions=[{"id": "sub-4", "topic": "a.b", "application": "billing"}]``).
``bare=True`` starts from a store and empty lists instead of the sample. Each subscription gets
its ``sub-<n>`` subscribe grant unless it has one or ``grant_subscriptions=False``.
Other keyword arguments set top-level fields before sealing, so a test can build an invalid
document that still has a matching checksum: ``make_config(stores=[])`` fails on references,
not on the checksum.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from meshruntime.config import seal

__all__ = [
    "access_rule",
    "application",
    "app_key",
    "key_for",
    "make_config",
    "make_key",
    "routing_rule",
    "subscription",
    "topic",
]

FIXED_TIME = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
}


def make_key(prefix: str) -> str:
    """The plain application key with this 8-character prefix: ``mk_<prefix>_<40 url-safe>``.

    Derived from the prefix, so a test can rebuild the key that a document only holds a hash of.
    """
    secret = base64.urlsafe_b64encode(hashlib.sha256(f"secret:{prefix}".encode()).digest()).decode()[:40]
    return f"mk_{prefix}_{secret}"


def default_prefix(application_name: str) -> str:
    return hashlib.sha256(application_name.encode()).hexdigest()[:8]


def key_for(application_name: str) -> str:
    """The plain key of the key that ``application(name)`` gets by default."""
    return make_key(default_prefix(application_name))


def app_key(prefix: str, *, expires_at: str | None = None) -> dict[str, Any]:
    """The document's entry for ``make_key(prefix)``: prefix and SHA-256, never the key itself."""
    digest = hashlib.sha256(make_key(prefix).encode("utf-8")).hexdigest()
    return {"prefix": prefix, "sha256": digest, "expires_at": expires_at}


def topic(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "store": "default",
        "lifecycle": "active",
        "sunset": None,
        "schema": None,
        "retention": {"max_age_seconds": 604800, "max_length": 100000},
        **overrides,
    }


def application(
    name: str, *, team: str = "payments", keys: Iterable[str | dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An application; ``keys`` are prefixes or key dicts, by default one key (see key_for)."""
    chosen = [default_prefix(name)] if keys is None else keys
    return {
        "name": name,
        "team": team,
        "keys": [app_key(key) if isinstance(key, str) else dict(key) for key in chosen],
    }


def access_rule(
    id: str,
    principals: str | list[str],
    topic: str,
    actions: Iterable[str] = ("publish", "subscribe"),
    *,
    effect: str = "allow",
    description: str = "",
) -> dict[str, Any]:
    return {
        "id": id,
        "principals": principals if isinstance(principals, str) else list(principals),
        "topic": topic,
        "actions": list(actions),
        "effect": effect,
        "description": description,
    }


def subscription(
    id: str, topic: str, application: str, *, delivery: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A subscription; ``delivery`` entries are merged over the defaults."""
    return {
        "id": id,
        "topic": topic,
        "application": application,
        "state": "active",
        "delivery": {
            "url": "http://127.0.0.1:9/hooks/orders",
            "mode": "binary",
            "timeout_ms": 5000,
            "max_attempts": 8,
            "backoff_base_ms": 200,
            "backoff_cap_ms": 60000,
            "max_in_flight": 16,
            **(delivery or {}),
        },
        "filters": [],
        "secret": f"whsec-{id}-0123456789abcdef",
        **overrides,
    }


def routing_rule(
    id: str, source: str, targets: Iterable[str], *, filters: list[Any] | None = None, order: int = 10
) -> dict[str, Any]:
    return {"id": id, "source": source, "filters": filters or [], "targets": list(targets), "order": order}


def _sample() -> dict[str, list[dict[str, Any]]]:
    return {
        "stores": [{"name": "default", "kind": "redis"}],
        "topics": [
            topic("audit.orders"),
            topic("orders.created", schema=copy.deepcopy(ORDER_SCHEMA)),
            topic("orders.shipped"),
        ],
        "applications": [
            application("auditor", team="compliance"),
            application("billing", team="payments"),
            application("shipping", team="logistics"),
        ],
        "access_rules": [
            access_rule("rule-1", ["billing"], "orders.*", ["publish"]),
            access_rule("rule-2", ["auditor"], "audit.*", ["subscribe"]),
            access_rule(
                "rule-3",
                "*",
                "audit.*",
                ["publish"],
                effect="deny",
                description="only routing writes the audit topics",
            ),
        ],
        "subscriptions": [
            subscription(
                "sub-1",
                "orders.created",
                "shipping",
                filters=[{"exact": {"type": "com.example.order.created"}}],
            ),
        ],
        "routing_rules": [routing_rule("route-1", "orders.*", ["audit.orders"])],
    }


def _build(entries: Iterable[Any], builder: Any, key: str) -> list[dict[str, Any]]:
    """Names become default entries; dicts are merged over the defaults of their builder."""
    built = []
    for entry in entries:
        if isinstance(entry, str):
            built.append(builder(entry))
        else:
            entry = dict(entry)
            if builder is None:
                built.append(entry)
            elif key in entry:
                built.append({**builder(entry[key]), **entry})
            else:
                built.append(entry)
    return built


def _default_subscription(id: str) -> dict[str, Any]:
    return subscription(id, "orders.created", "shipping")


def make_config(
    *,
    version: int = 1,
    bare: bool = False,
    stores: Iterable[Any] | None = None,
    topics: Iterable[Any] | None = None,
    applications: Iterable[Any] | None = None,
    access_rules: Iterable[dict[str, Any]] | None = None,
    subscriptions: Iterable[dict[str, Any]] | None = None,
    routing_rules: Iterable[dict[str, Any]] | None = None,
    grant_subscriptions: bool = True,
    sealed: bool = True,
    generated_at: datetime = FIXED_TIME,
    **fields: Any,
) -> dict[str, Any]:
    """A MeshConfig document; sealed (version, generated_at, checksum) unless ``sealed=False``."""
    base = (
        {
            "stores": [{"name": "default", "kind": "redis"}],
            "topics": [],
            "applications": [],
            "access_rules": [],
            "subscriptions": [],
            "routing_rules": [],
        }
        if bare
        else _sample()
    )
    doc: dict[str, Any] = {"format": 1, **base}
    if stores is not None:
        doc["stores"] = _build(stores, lambda name: {"name": name, "kind": "redis"}, "name")
    if topics is not None:
        doc["topics"] = _build(topics, topic, "name")
    if applications is not None:
        doc["applications"] = [
            application(entry)
            if isinstance(entry, str)
            else application(entry["name"], team=entry.get("team", "payments"), keys=entry.get("keys"))
            for entry in applications
        ]
    if access_rules is not None:
        doc["access_rules"] = [dict(rule) for rule in access_rules]
    if subscriptions is not None:
        doc["subscriptions"] = _build(subscriptions, _default_subscription, "id")
    if routing_rules is not None:
        doc["routing_rules"] = [
            {**routing_rule(r["id"], r["source"], r["targets"]), **r} for r in routing_rules
        ]
    if grant_subscriptions:
        have = {rule["id"] for rule in doc["access_rules"]}
        for sub in doc["subscriptions"]:
            if sub["id"] not in have:
                doc["access_rules"].append(
                    access_rule(
                        sub["id"],
                        [sub["application"]],
                        sub["topic"],
                        ["subscribe"],
                        description=f"subscription {sub['id']}",
                    )
                )
    doc.update(fields)
    if not sealed:
        return {
            "version": version,
            "checksum": "0" * 64,
            "generated_at": generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            **doc,
        }
    return seal(doc, version, generated_at=generated_at)
