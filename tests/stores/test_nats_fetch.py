"""NATS JetStream reads hand over no more than they are asked for, and no less, against the
machine's NATS.

nats-py's pull ``fetch`` first drains its subscription's queue, where the server's answers to an
earlier fetch that timed out (a loaded machine, a slow server) end up, and returns all of them
whatever the batch. The delivery engine's in-flight limit rests on ``read(count)`` returning at
most ``count``; the CI once saw a read of 4 hand over 5.

The event browser's ``read_range`` scans through an ephemeral consumer in fetches of at most 256
that wait ``NO_WAIT_S`` each: a fetch that came back empty because the answer was late once ended
the scan, and the page was silently short.
"""

from __future__ import annotations

import json

import pytest

from meshruntime.store import names, nats_jetstream, open_store
from tests.portal_support.waiting import until, until_awaited

from .conftest import engine_url, forget
from .test_conformance import TOPIC, append


@pytest.fixture
async def nats_store(request, prefix):
    url = engine_url("nats", request)
    store = open_store(url, prefix=prefix, name="nats-fetch", visibility_timeout_s=30.0)
    await store.connect()
    yield store
    await store.close()
    await forget("nats", url, prefix)


async def test_a_read_after_a_timed_out_fetch_hands_over_no_more_than_asked(nats_store):
    await append(nats_store, 10)
    await nats_store.ensure_group(TOPIC, "sub-1", "0")
    member = nats_store.consumer(TOPIC, "sub-1", "runtime-a")
    try:
        [first] = await member.read(1, 1000)
        # what a fetch that timed out leaves behind: the server's answer to its pull request,
        # arriving in the subscription's queue after the fetch gave up
        sub = member._subs["topic"]
        nc = await nats_store._client()
        await nc.publish(sub._nms, json.dumps({"batch": 5, "no_wait": True}).encode(), reply=sub._deliver)

        await until(lambda: sub._sub._pending_queue.qsize() >= 5, "the orphaned answer in the subscription's queue")

        held = [first]
        for asked in (2, 2, 1):
            got = await member.read(asked, 0)
            assert len(got) == asked, f"asked for {asked}, handed {len(got)}"
            held += got
        while len(held) < 10:
            got = await member.read(10 - len(held), 1000)
            assert 0 < len(got) <= 10 - len(held)
            held += got
        ids = [h.entry.id for h in held]
        assert sorted(ids, key=int) == [str(i) for i in range(1, 11)], ids  # each once, none lost
        await member.ack(held)

        async def settled() -> bool:
            info = await nats_store.group_info(TOPIC, "sub-1")
            return (info.lag, info.pending) == (0, 0)

        await until_awaited(settled, "every event acknowledged")
    finally:
        await member.close()


async def test_closing_gives_back_what_was_held_beyond_the_reads(nats_store):
    await append(nats_store, 4)
    await nats_store.ensure_group(TOPIC, "sub-1", "0")
    member = nats_store.consumer(TOPIC, "sub-1", "runtime-a")
    [first] = await member.read(1, 1000)
    sub = member._subs["topic"]
    nc = await nats_store._client()
    await nc.publish(sub._nms, json.dumps({"batch": 3, "no_wait": True}).encode(), reply=sub._deliver)

    await until(lambda: sub._sub._pending_queue.qsize() >= 3, "the orphaned answer in the subscription's queue")
    second = await member.read(2, 0)  # the queue's three (2, 3, 4), of which 4 is kept
    assert [h.entry.id for h in second] == ["2", "3"]
    await member.ack([first, *second])
    await member.close()  # 4 was held, never handed over: released, not left to AckWait (30 s)

    other = nats_store.consumer(TOPIC, "sub-1", "runtime-b")
    try:
        back = await until_awaited(lambda: other.read(2, 200), "the released event read by another member")
        assert [h.entry.id for h in back] == ["4"]
        await other.ack(back)
    finally:
        await other.close()


async def deleted_here_and_there(nats_store, total: int) -> list[str]:
    """``total`` events, some deleted (the first, one at each fetch's edge, a run, the last): the
    ids left, oldest first."""
    await append(nats_store, total, batch=100)
    gone = {1, 256, 257, 300, *range(400, 420), 513, total}
    nc = await nats_store._client()
    js = nc.jetstream()
    for seq in gone:
        await js.delete_msg(names.nats_topic_stream(nats_store.prefix, TOPIC), seq)
    return [str(seq) for seq in range(1, total + 1) if seq not in gone]


async def test_a_scan_over_several_fetches_with_deleted_messages_returns_every_event(nats_store):
    left = await deleted_here_and_there(nats_store, 700)
    assert [e.id for e in await nats_store.read_range(TOPIC, count=1000)] == left
    assert [e.id for e in await nats_store.read_range(TOPIC, count=600)] == left[:600]
    assert [e.id for e in await nats_store.read_range(TOPIC, count=300, newest_first=True)] == left[::-1][:300]
    assert [e.id for e in await nats_store.read_range(TOPIC, count=1000, after="255", before="520")] == \
        [i for i in left if 255 < int(i) < 520]


async def dead_lettered(nats_store, count: int) -> list[str]:
    """The first ``count`` events of the topic read by subscription sub-1 and dead-lettered: their
    dead-letter ids, oldest first."""
    await nats_store.ensure_group(TOPIC, "sub-1", "0")
    member = nats_store.consumer(TOPIC, "sub-1", "runtime-a")
    ids: list[str] = []
    try:
        while len(ids) < count:
            for held in await member.read(min(100, count - len(ids)), 1000):
                ids.append(await member.dead_letter(held, "rejected: 400 Bad Request", 400, 1))
    finally:
        await member.close()
    return ids


async def test_a_scan_whose_fetches_answer_late_still_returns_every_event(nats_store, monkeypatch):
    """Fetches that stop waiting long before the server can answer (0.11 ms; nats-py's least is
    0.1): what a loaded machine does to the 50 ms ones now and then, here nearly every time. The
    answers come to the next fetch."""
    left = await deleted_here_and_there(nats_store, 700)
    letters = await dead_lettered(nats_store, 300)
    monkeypatch.setattr(nats_jetstream, "NO_WAIT_S", 0.00011)
    assert [e.id for e in await nats_store.read_range(TOPIC, count=1000)] == left
    assert [e.id for e in await nats_store.read_range(TOPIC, count=300, newest_first=True)] == left[::-1][:300]
    assert [d.id for d in await nats_store.dead_letters("sub-1", count=1000)] == letters[::-1]
