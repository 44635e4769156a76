"""The demo producer against a runtime with the demo catalog's rules: every outcome as intended."""

from __future__ import annotations

import argparse

from factories import access_rule, key_for, make_config, routing_rule, topic
from runtime_harness import running_runtime

from meshruntime.demo import producer

ORDER_SCHEMA = {"type": "object", "required": ["order_id", "amount"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}}}


def demo_config() -> dict:
    orders = [topic(f"orders.{e}", schema=ORDER_SCHEMA) for e in ("created", "updated", "completed", "cancelled")]
    return make_config(
        topics=[*orders, topic("orders.failed", lifecycle="deprecated", sunset="2027-03-31", schema=ORDER_SCHEMA),
                "payments.created", "payments.completed", "invoices.created", "audit.orders"],
        applications=["checkout", "billing"],
        access_rules=[
            access_rule("rule-1", ["checkout"], "orders.*", ["publish"]),
            access_rule("rule-2", ["billing"], "payments.*", ["publish"]),
            access_rule("rule-3", ["checkout", "billing"], "invoices.*", ["publish", "subscribe"]),
            access_rule("rule-4", ["checkout"], "orders.failed", ["publish"], effect="deny"),
        ],
        subscriptions=[], grant_subscriptions=False,
        routing_rules=[routing_rule("route-1", "orders.*", ["audit.orders"])],
    )


async def test_the_demo_producer_publishes_and_is_refused_on_purpose(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix, doc=demo_config()) as h:
        url = h.url.rstrip("/")
        args = argparse.Namespace(
            runtime=[f"checkout={url}", f"billing={url}"], key=[f"checkout={key_for('checkout')}",
                                                             f"billing={key_for('billing')}"],
            keys_file=None, rate=0, refusal_every=4, count=24, wait=10, seed=3)
        counts = await producer.run(args)
        assert counts == {"sent": 24, "accepted": 18, "refused": 6, "unexpected": 0}
        assert h.stored("orders.created") and h.stored("payments.created") and h.stored("audit.orders")
        assert h.stored("orders.failed") == []
