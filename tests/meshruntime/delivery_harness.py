"""The set-up of the delivery tests: events appended straight to a store, delivery engines (as a
runtime runs them in process) stopped after the test, a webhook receiver that checks sub-1's
signatures (and can be told to hold its answers), and the reads around them.

The fixtures reach the tests through the conftests: ``managers`` and ``receiver`` here, and
``receiver`` in ``tests/stores`` (which imports this module as ``tests.meshruntime.delivery_harness``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from meshruntime.delivery import DeliveryManager, DeliverySettings
from meshruntime.demo.receiver import Receiver
from meshruntime.journey import JourneyRecorder
from meshruntime.keys import KeySpace
from meshruntime.store import AppendEntry

TOPIC = "orders.created"
FAST = DeliverySettings(visibility_timeout_s=1.0, block_ms=100, redeliver_poll_s=0.1, metrics_interval_s=0.2)
SECRET = "whsec-sub-1-0123456789abcdef"  # the factories' secret for sub-1


def event(i: int, *, type_: str = "com.example.order.created", **extra: Any) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"e{i}", "source": "/shop", "type": type_,
                         "datacontenttype": "application/json", "data": {"order_id": f"o{i}"}, **extra})


async def publish(store, n: int, start: int = 0, topic: str = TOPIC, **extra: Any) -> list[str]:
    """Append events ``e<start>`` … to ``topic``, past the publish path; their positions."""
    return await store.append_many([AppendEntry(topic, event(i, **extra)) for i in range(start, start + n)])


def hold_answers(receiver: Receiver) -> asyncio.Event:
    """The receiver answers nothing until the event returned is set."""
    gate = asyncio.Event()

    async def held(received, request):
        await gate.wait()

    receiver.respond = held
    return gate


@pytest.fixture
async def receiver():
    """A webhook receiver that verifies sub-1's signatures."""
    receiver = await Receiver(secret=SECRET).start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def managers(store):
    """Build managers (runtimes' delivery engines) that are stopped after the test."""
    made: list[DeliveryManager] = []

    async def make(doc: dict[str, Any] | None = None, *, consumer: str = "rt-a", application: str | None = "shipping",
                   settings: DeliverySettings = FAST, journey: bool = True) -> DeliveryManager:
        store.visibility_timeout_s = settings.visibility_timeout_s  # an engine's setting, made when opened
        manager = DeliveryManager(store, consumer=consumer, application=application, settings=settings,
                                  journey=JourneyRecorder(consumer) if journey else None, user_agent=consumer)
        made.append(manager)
        await manager.start()
        if doc is not None:
            manager.apply_config(doc)
            await manager.reconciled()
        return manager

    yield make
    for manager in made:
        await manager.stop(timeout=5)


def sample(manager: DeliveryManager, name: str, **labels: str) -> float:
    """A sample of the engine's metrics (0 when it has none yet)."""
    value = manager.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def group_row(redis_client, keys: KeySpace, sub_id: str, topic: str = TOPIC) -> dict | None:
    """The subscription's consumer group as Redis describes it (XINFO GROUPS), None before it exists."""
    for row in redis_client.xinfo_groups(keys.topic(topic)):
        if row["name"].decode() == sub_id:
            return row
    return None
