"""meshruntime.keys: every name of the key space, spelled as docs/meshconfig.md spells it."""

from __future__ import annotations

import dataclasses

import pytest

from meshruntime.keys import DEFAULT_PREFIX, KeySpace


def test_it_spells_every_name_as_the_contract_does() -> None:
    keys = KeySpace()
    assert keys.prefix == DEFAULT_PREFIX == "mesh:"
    assert {
        "config": keys.config(17),
        "config_patch": keys.config_patch(17),
        "config_latest": keys.config_latest,
        "config_channel": keys.config_channel,
        "runtimes": keys.runtimes,
        "tap": keys.tap("orders.created"),
        "tap_watch": keys.tap_watch("orders.created"),
        "refusals": keys.refusals,
        "refusals_watch": keys.refusals_watch,
        "topic_refusals": keys.topic_refusals("orders.failed"),
        "topic_refusals_watch": keys.topic_refusals_watch("orders.failed"),
        "application_refusals": keys.application_refusals("checkout"),
        "application_refusals_watch": keys.application_refusals_watch("checkout"),
        "journey": keys.journey("evt-1"),
        "topic": keys.topic("orders.created"),
        "dlq": keys.dlq("sub-7"),
        "redeliver": keys.redeliver("sub-7"),
        "delivery": keys.delivery("sub-7"),
        "delivery_minute": keys.delivery_minute("sub-7", 29_000_000),
        "delivery_lock": keys.delivery_lock("sub-7"),
        "reply": keys.reply("tok-1"),
        "replies": keys.replies,
        "push_pending": keys.push_pending,
        "push_recent": keys.push_recent,
        "push_lock": keys.push_lock,
        "push_changes": keys.push_changes,
        "push_status": keys.push_status,
        "push_stats": keys.push_stats,
        "chart_lease": keys.chart_lease("3f2a"),
        "chart_last": keys.chart_last("3f2a"),
        "pattern": keys.pattern,
    } == {
        "config": "mesh:config:17",
        "config_patch": "mesh:config:17:patch",
        "config_latest": "mesh:config:latest",
        "config_channel": "mesh:config",
        "runtimes": "mesh:runtimes",
        "tap": "mesh:tap:orders.created",
        "tap_watch": "mesh:tap:watch:orders.created",
        "refusals": "mesh:refusals",
        "refusals_watch": "mesh:refusals:watch",
        "topic_refusals": "mesh:refusals:topic:orders.failed",
        "topic_refusals_watch": "mesh:refusals:watch:topic:orders.failed",
        "application_refusals": "mesh:refusals:application:checkout",
        "application_refusals_watch": "mesh:refusals:watch:application:checkout",
        "journey": "mesh:journey:evt-1",
        "topic": "mesh:topic:orders.created",
        "dlq": "mesh:dlq:sub-7",
        "redeliver": "mesh:redeliver:sub-7",
        "delivery": "mesh:delivery:sub-7",
        "delivery_minute": "mesh:delivery:sub-7:m:29000000",
        "delivery_lock": "mesh:delivery:sub-7:lock",
        "reply": "mesh:reply:tok-1",
        "replies": "mesh:replies",
        "push_pending": "mesh:push:pending",
        "push_recent": "mesh:push:recent",
        "push_lock": "mesh:push:lock",
        "push_changes": "mesh:push:changes",
        "push_status": "mesh:push:status",
        "push_stats": "mesh:push:stats",
        "chart_lease": "mesh:charts:lease:3f2a",
        "chart_last": "mesh:charts:last:3f2a",
        "pattern": "mesh:*",
    }


def test_every_name_starts_with_the_configured_prefix() -> None:
    keys = KeySpace("acme-prod:")
    assert keys.topic("a.b") == "acme-prod:topic:a.b"
    assert keys.config_channel == "acme-prod:config"
    assert keys.pattern == "acme-prod:*"


def test_it_is_a_value() -> None:
    assert KeySpace("a:") == KeySpace("a:") and hash(KeySpace("a:")) == hash(KeySpace("a:"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        KeySpace().prefix = "other:"  # type: ignore[misc]


def test_it_refuses_a_prefix_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="the Redis key prefix must be a string, got bytes"):
        KeySpace(b"mesh:")  # type: ignore[arg-type]
