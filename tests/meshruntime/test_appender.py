"""Coalescing appends: alone a request goes at once; under load requests share pipelined writes."""

from __future__ import annotations

import asyncio

import pytest

from meshruntime.appender import AppendCoalescer
from meshruntime.store import AppendEntry, JourneyStep, StoreError


class RecordingStore:
    """Wraps the real store and records the size of every write; ``gate`` can hold writes."""

    def __init__(self, store) -> None:
        self.store = store
        self.writes: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def append_many(self, entries, *, journey=()):
        self.writes.append(len(entries))
        await self.gate.wait()
        if self.fail:
            raise StoreError("append failed: the store is down")
        return await self.store.append_many(entries, journey=journey)


@pytest.fixture
def store(store):
    """The shared store (see conftest.py), wrapped to record and hold its writes."""
    return RecordingStore(store)


def entries(topic: str, n: int, tag: str) -> list[AppendEntry]:
    return [AppendEntry(topic, f'{{"id":"{tag}-{i}"}}'.encode()) for i in range(n)]


async def test_a_lone_request_is_written_at_once(store):
    coalescer = AppendCoalescer(store, max_in_flight=1)
    ids = await coalescer.append(entries("t.a", 3, "x"))
    assert len(ids) == 3 and store.writes == [3]


async def test_requests_arriving_during_a_write_share_the_next_one(store, redis_client, keys):
    coalescer = AppendCoalescer(store, max_in_flight=1)
    store.gate.clear()
    first = asyncio.create_task(coalescer.append(entries("t.a", 1, "first")))
    await asyncio.sleep(0)  # let it start its write
    others = [asyncio.create_task(coalescer.append(entries("t.b", 2, f"r{i}"), [JourneyStep(f"r{i}", b"{}")]))
              for i in range(10)]
    await asyncio.sleep(0)
    assert store.writes == [1]  # the ten wait for the write in flight
    store.gate.set()
    first_ids = await first
    results = await asyncio.gather(*others)
    assert store.writes == [1, 20]  # ... and then go together
    assert len(first_ids) == 1 and all(len(r) == 2 for r in results)
    # each request got its own ids, in the order of its events
    stored = [i.decode() for i, _f in redis_client.xrange(keys.topic("t.b"))]
    assert [i for r in results for i in r] == stored
    assert redis_client.lrange(keys.journey("r3"), 0, -1) == [b"{}"]
    await coalescer.drain()


async def test_a_write_carries_at_most_max_batch_events_of_whole_requests(store):
    coalescer = AppendCoalescer(store, max_in_flight=1, max_batch=5)
    store.gate.clear()
    tasks = [asyncio.create_task(coalescer.append(entries("t.c", 2, f"r{i}"))) for i in range(6)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(*tasks)
    assert store.writes == [2, 4, 4, 2]


async def test_a_failed_write_fails_every_request_in_it_and_the_next_write_works(store):
    observed = []
    coalescer = AppendCoalescer(store, max_in_flight=1, on_error=observed.append)
    store.gate.clear()
    store.fail = True
    tasks = [asyncio.create_task(coalescer.append(entries("t.d", 1, f"r{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results) and len(observed) == 2
    store.fail = False
    assert len(await coalescer.append(entries("t.d", 1, "again"))) == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_write(store, redis_client, keys):
    coalescer = AppendCoalescer(store, max_in_flight=1)
    store.gate.clear()
    first = asyncio.create_task(coalescer.append(entries("t.e", 1, "first")))
    await asyncio.sleep(0)
    second = asyncio.create_task(coalescer.append(entries("t.e", 1, "second")))
    third = asyncio.create_task(coalescer.append(entries("t.e", 1, "third")))
    await asyncio.sleep(0)
    second.cancel()
    store.gate.set()
    await first
    assert len(await third) == 1
    await coalescer.drain()
    assert redis_client.xlen(keys.topic("t.e")) == 3  # the cancelled request's event was written too
