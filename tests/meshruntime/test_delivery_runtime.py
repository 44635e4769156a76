"""Delivery inside a whole runtime: publish over HTTP, receive on a webhook, see it in /metrics."""

from __future__ import annotations

import asyncio

from factories import make_config, subscription
from runtime_harness import event, running_runtime

from meshruntime.delivery import verify
from meshruntime.demo.receiver import Receiver

SECRET = "whsec-sub-1-0123456789abcdef"


def doc_for(url: str, version: int = 1, **delivery):
    return make_config(version=version, subscriptions=[
        subscription("sub-1", "orders.created", "shipping", delivery={"url": url, **delivery},
                     filters=[{"exact": {"type": "com.example.order.created"}}]),
    ])


async def test_an_event_published_through_a_gateway_reaches_its_subscriber(redis_url, key_prefix, redis_client):
    receiver = await Receiver(secret=SECRET).start()
    try:
        async with running_runtime(redis_url, key_prefix, doc=doc_for(receiver.url), application=None) as h:
            await h.runtime.delivery.reconciled()
            response = await h.publish("orders.created", event(1), app="billing")
            assert response.status == 202, await response.text()
            await receiver.wait_for(lambda r: r.ids() == ["evt-1"])
            got = receiver.received[0]
            verify(SECRET, got.headers["Mesh-Signature"], got.body)
            assert got.headers["User-Agent"].startswith("meshruntime/")
            async with asyncio.timeout(5):  # the acked step follows the receiver's answer
                while (steps := [s["step"] for s in h.journey("evt-1")])[-1:] != ["acked"]:
                    await asyncio.sleep(0.01)
            assert steps[0] == "accepted" and "stored" in steps and steps[-2:] == ["attempt", "acked"]
            metrics = await (await h.client.get("/metrics")).text()
            assert 'meshruntime_deliveries_total{outcome="delivered",subscription="sub-1"} 1.0' in metrics
            assert "meshruntime_delivery_latency_seconds_bucket" in metrics
    finally:
        await receiver.stop()


async def test_a_config_change_reaches_the_delivery_engine(redis_url, key_prefix, redis_client):
    receiver = await Receiver(secret=SECRET).start()
    try:
        async with running_runtime(redis_url, key_prefix, doc=make_config(subscriptions=[]),
                                   application=None) as h:
            assert h.runtime.delivery.workers == {}
            h.runtime.apply_config(doc_for(receiver.url, version=2, mode="structured"))
            await h.runtime.delivery.reconciled()
            assert set(h.runtime.delivery.workers) == {"sub-1"}
            await h.publish("orders.created", event(2), app="billing")
            await receiver.wait_for(lambda r: r.ids() == ["evt-2"])
            assert receiver.received[0].mode == "structured"
    finally:
        await receiver.stop()
