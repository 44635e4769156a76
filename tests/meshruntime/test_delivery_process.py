"""The delivery engine in its child process, as the runtime sees it: configured, read, stopped.

The child serves its metrics and counters with the runtime's HTTP server and the runtime reads
them with the delivery's HTTP client; this is what the runtime's ``/metrics`` and heartbeats
take from it.
"""

from __future__ import annotations

import orjson
from factories import make_config, subscription

from meshruntime.delivery import DeliverySettings
from meshruntime.delivery.process import DeliveryProcess
from meshruntime.demo.receiver import Receiver
from meshruntime.store import AppendEntry
from tests.portal_support.waiting import until

TOPIC = "orders.created"


def event(i: int) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"e{i}", "source": "/shop", "type": "t", "data": {"i": i}})


async def test_the_child_delivers_and_the_runtime_reads_its_metrics_and_counters(redis_url, key_prefix, store):
    receiver = await Receiver().start()
    child = DeliveryProcess(connections={"default": redis_url}, mesh_url=redis_url, prefix=key_prefix,
                            consumer="rt-child", application=None,
                            settings=DeliverySettings(visibility_timeout_s=5), journey_sample_rate=0,
                            journey_ttl_seconds=60, user_agent="rt-child")
    try:
        child.apply_config(make_config(bare=True, topics=[TOPIC], applications=["shipping"], subscriptions=[
            subscription("sub-1", TOPIC, "shipping", delivery={"url": receiver.url})]))
        await child.start()
        assert child.pid is not None
        await store.ensure_group(TOPIC, "sub-1", "0")  # what the child creates; events before it count too
        await store.append_many([AppendEntry(TOPIC, event(i)) for i in range(5)])
        await receiver.wait_for(lambda r: len(r.delivered) == 5)
        # the runtime polls the child's counters every 2 s
        await until(lambda: child.counters().get("delivered") == 5, "the child's counters to show 5 delivered")
        assert child.counters()["subscriptions"] == 1 and child.counters()["delivery_restarts"] == 0
        metrics = (await child.metrics_text()).decode()
        assert 'meshruntime_deliveries_total{outcome="delivered",subscription="sub-1"} 5.0' in metrics
        assert await child._get("/elsewhere") is None  # a 404 reads as nothing
    finally:
        await child.stop()
        await receiver.stop()
    assert child.pid is None and await child.metrics_text() == b""
