"""The compiler: the database's governance state as one MeshConfig body (docs/meshconfig.md).

Deterministic: every list is sorted (stores, topics and applications by name, keys by prefix,
rules and subscriptions by id), so compiling the same database twice gives the same bytes and
the same checksum. Fast, because a push compiles the whole mesh after every change: one
``values_list`` query per table, no per-row query, no model instances, no per-value converters
for the big tables (meshadmin.rows); benchmarks/propagation.py keeps the compile of a large mesh
measured.

The result has no ``version``, ``checksum`` or ``generated_at``: ``meshruntime.config.seal``
adds them when a version is recorded (rollout.push).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from governance.models import Application, ApplicationKey
from governance.rules import compiled_access_rules, compiled_routing_rules
from meshadmin.rows import date_text, json_value, raw_rows
from meshruntime.config import FORMAT
from subscriptions.models import Subscription
from topics.models import EventStore, Topic

_KEY_PREFIX = re.compile(r"^[A-Za-z0-9]{8}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    fraction = f".{value.microsecond:06d}" if value.microsecond else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def compile_stores() -> list[dict[str, Any]]:
    rows = EventStore.objects.order_by("name").values_list("name", "kind", "connection")
    return [{"name": name, "kind": kind, "connection": connection} for name, kind, connection in rows]


def compile_topics() -> list[dict[str, Any]]:
    rows = raw_rows(Topic.objects.order_by("name").values_list(
        "name", "store__name", "lifecycle", "sunset", "data_schema", "retention_max_age", "retention_max_length"
    ))
    topics = []
    for name, store, lifecycle, sunset, schema, max_age, max_length in rows:
        schema = json_value(schema)
        topics.append({
            "name": name,
            "store": store,
            "lifecycle": lifecycle,
            "sunset": date_text(sunset) or None,
            "schema": schema if schema not in ("", None) else None,
            "retention": {"max_age_seconds": max_age, "max_length": max_length},
        })
    return topics


def compile_applications(now: datetime) -> list[dict[str, Any]]:
    """Applications with their usable keys: not revoked, not expired, and generated (a key row
    without a prefix and digest never authenticated anything)."""
    keys: dict[int, list[dict[str, Any]]] = defaultdict(list)
    active = ApplicationKey.objects.filter(revoked__isnull=True).filter(Q(expires__isnull=True) | Q(expires__gt=now))
    for application_id, prefix, digest, expires in active.order_by("prefix").values_list(
        "application_id", "prefix", "sha256", "expires"
    ):
        if _KEY_PREFIX.match(prefix) and _SHA256.match(digest):
            keys[application_id].append({"prefix": prefix, "sha256": digest, "expires_at": _timestamp(expires)})
    return [
        {"name": name, "team": team, "keys": keys.get(pk, [])}
        for pk, name, team in Application.objects.order_by("name").values_list("pk", "name", "team__slug")
    ]


def compile_subscriptions() -> list[dict[str, Any]]:
    """Active and paused subscriptions (a paused one keeps its position in the store)."""
    rows = raw_rows(Subscription.objects.filter(state__in=Subscription.LIVE_STATES).values_list(
        "pk", "topic__name", "application__name", "state", "webhook_url", "delivery_mode", "timeout_ms",
        "max_attempts", "backoff_base_ms", "backoff_cap_ms", "max_in_flight", "filters", "signing_secret",
        "responder", "mqtt_store__name", "mqtt_topic",
    ))
    subscriptions = [
        {
            "id": f"sub-{pk}",
            "topic": topic,
            "application": application,
            "state": state,
            # an MQTT target is mqtt://<store>/<topic> (Subscription.target_url says the same)
            "delivery": {"url": f"mqtt://{mqtt_store}/{mqtt_topic}" if mqtt_store else url,
                         "mode": mode, "timeout_ms": timeout_ms, "max_attempts": max_attempts,
                         "backoff_base_ms": base_ms, "backoff_cap_ms": cap_ms, "max_in_flight": in_flight},
            "filters": json_value(filters) or [],
            "secret": secret,
            **({"responder": True} if responder else {}),  # only when true: other checksums stay as they were
        }
        for (pk, topic, application, state, url, mode, timeout_ms, max_attempts, base_ms, cap_ms, in_flight,
             filters, secret, responder, mqtt_store, mqtt_topic) in rows
    ]
    return sorted(subscriptions, key=lambda subscription: subscription["id"])


def compile_routing_rules() -> list[dict[str, Any]]:
    """Routing rules that route: governance.rules.compiled_routing_rules, which the simulator
    and the validation page share."""
    return compiled_routing_rules()


def compile_mesh_config(now: datetime | None = None) -> dict[str, Any]:
    """The document body for the database as it is now (``now`` decides which keys expired)."""
    now = now or timezone.now()
    return {
        "format": FORMAT,
        "stores": compile_stores(),
        "topics": compile_topics(),
        "applications": compile_applications(now),
        # The one conversion of rules and approved subscriptions (the simulator uses it too).
        "access_rules": compiled_access_rules(),
        "subscriptions": compile_subscriptions(),
        "routing_rules": compile_routing_rules(),
    }
