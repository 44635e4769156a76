"""One suite for every engine, against the real servers (see conftest.py for which)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from meshruntime.store import (
    AppendEntry,
    GroupConsumer,
    Held,
    Retention,
    Store,
    StoreError,
    StoreUnsupported,
    open_store,
)
from tests.portal_support.waiting import until, until_awaited

from .conftest import TRAITS, WAIT_S, engine_url, position_key
from .servers import free_port, private_nats, private_redis

TOPIC = "orders.created"
ROOT = Path(__file__).resolve().parents[2]


def event(i: int, **extra) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"e{i}", "source": "/conformance", "type": "t",
                         "data": {"i": i, **extra}})


async def append(store, count: int, topic: str = TOPIC, start: int = 0, batch: int = 10) -> list[str]:
    ids = []
    for first in range(start, start + count, batch):
        ids += await store.append_many([AppendEntry(topic, event(i)) for i in range(first, min(start + count,
                                                                                              first + batch))])
    return ids


async def read_until(consumer, count: int, timeout_s: float = 30.0, claim: bool = False) -> list[Held]:
    """Read (and, with ``claim``, claim stale events) until ``count`` are held."""
    held: list[Held] = []

    async def more():
        if claim:
            held.extend(await consumer.claim_stale(count))
        held.extend(await consumer.read(count - len(held) or 1, 200))
        return len(held) >= count

    await until_awaited(more, f"holding {count} events", timeout_s)
    return held


def events_of(held: list[Held]) -> list[bytes]:
    return [h.entry.event for h in held]


# -- appending and reading back ---------------------------------------------------------------------
async def test_the_engine_implements_the_interface(durable, kind):
    assert isinstance(durable, Store) and durable.kind == kind and durable.durable
    member = durable.consumer(TOPIC, "sub-1", "runtime-a")
    assert isinstance(member, GroupConsumer)
    await member.close()


async def test_it_appends_and_reads_back_byte_exact(durable, kind):
    payloads = [event(1), event(2, text="ünïcödé ✓ \u2028", blob="\x00\x01"), b'{"not":"json"' + b"\xff\xfe" * 3,
                event(3, big="x" * 200_000)]
    ids = await durable.append_many([AppendEntry(TOPIC, p) for p in payloads])
    assert len(ids) == 4 and len(set(ids)) == 4
    read = await durable.read_range(TOPIC, count=10)
    assert [e.event for e in read] == payloads
    assert [e.id for e in read] == ids
    assert all(e.topic == TOPIC and e.time_ms and abs(e.time_ms - time.time() * 1000) < 60_000 for e in read)
    assert await durable.length(TOPIC) == 4


async def test_it_keeps_the_order_of_appends(durable, kind):
    ids = await append(durable, 120, batch=25)
    assert sorted(ids, key=lambda i: position_key(kind, i)) == ids
    assert [e.event for e in await durable.read_range(TOPIC, count=500)] == [event(i) for i in range(120)]


async def test_an_unknown_topic_reads_empty(durable):
    assert await durable.read_range("no.such.topic", count=5) == []
    assert await durable.length("no.such.topic") == 0
    assert await durable.group_info("no.such.topic", "sub-1") is None


# -- consumer groups ------------------------------------------------------------------------------------
async def test_a_group_reads_each_event_once_and_acks(durable, kind, traits):
    await append(durable, 5)
    assert await durable.ensure_group(TOPIC, "sub-1", "0") is True
    assert await durable.ensure_group(TOPIC, "sub-1", "0") is False
    member = durable.consumer(TOPIC, "sub-1", "runtime-a")
    try:
        held = await read_until(member, 5)
        assert events_of(held) == [event(i) for i in range(5)]
        assert all(h.attempts == 0 and h.source == "topic" and not h.missing for h in held)
        await member.ack(held)
        await append(durable, 1, start=5)
        [new] = await read_until(member, 1)
        assert new.entry.event == event(5)
        await member.ack([new])
        info = await until_awaited(lambda: _settled(durable, 0), "the group to have nothing left", WAIT_S)
        assert info.lag == 0 and info.pending in (0, None)
        assert await member.read(10, 300) == []
    finally:
        await member.close()


async def _settled(store, lag):
    info = await store.group_info(TOPIC, "sub-1")
    return info if info is not None and info.lag == lag and info.pending in (0, None) else None


async def test_a_group_starts_at_new_events_or_at_a_time(durable):
    await append(durable, 3)
    assert await durable.ensure_group(TOPIC, "sub-new", "$") is True
    at = await _time_after_last(durable)
    await append(durable, 2, start=3)
    assert await durable.ensure_group(TOPIC, "sub-at", at) is True
    await append(durable, 1, start=5)
    for group, expected in (("sub-new", [3, 4, 5]), ("sub-at", [3, 4, 5])):
        member = durable.consumer(TOPIC, group, "runtime-a")
        try:
            held = await read_until(member, 3)
            assert events_of(held) == [event(i) for i in expected]
            await member.ack(held)
        finally:
            await member.close()


async def test_a_group_from_a_time_delivers_the_events_appended_in_that_very_millisecond(durable):
    await append(durable, 1)
    [first] = await durable.read_range(TOPIC, count=1)
    await append(durable, 1, start=1)
    # "at or after": the event appended at that millisecond is the group's first (Redis: its id is
    # <ms>-0, which a group created at that id would already count as delivered)
    assert await durable.ensure_group(TOPIC, "sub-at", first.time_ms) is True
    member = durable.consumer(TOPIC, "sub-at", "runtime-a")
    try:
        held = await read_until(member, 2)
        assert events_of(held) == [event(0), event(1)]
        await member.ack(held)
    finally:
        await member.close()


async def _time_after_last(store) -> int:
    """A time after every event appended so far (and before any appended from now on)."""
    [last] = await store.read_range(TOPIC, count=1, newest_first=True)
    await until(lambda: _later_than(last.time_ms), "the clock to pass the last event", WAIT_S)
    return last.time_ms + 1


def _later_than(ms: int) -> bool:
    return time.time() * 1000 > ms + 1


async def test_a_released_event_comes_back(durable):
    await append(durable, 3)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    member = durable.consumer(TOPIC, "sub-1", "runtime-a")
    try:
        held = await read_until(member, 3)
        await member.ack(held[:1])
        await member.release(held[1:])
        again = await read_until(member, 2)
        assert events_of(again) == [event(1), event(2)]
        await member.ack(again)
    finally:
        await member.close()


async def test_a_crashed_members_events_go_to_another_after_the_visibility_timeout(durable, kind, url, prefix,
                                                                                   traits):
    """A runtime killed while holding events (kill -9: no goodbye) loses them to another member,
    not before the visibility timeout, each with the attempt its delivery counts."""
    await append(durable, 4)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.stores.member", url, prefix, TOPIC, "sub-1", "runtime-dead", "4",
         str(traits.visibility_timeout_s)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    survivor = durable.consumer(TOPIC, "sub-1", "runtime-b")
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        held_by_dead = orjson.loads(line or b"null")
        assert held_by_dead is not None, child.stderr.read().decode()[-3000:]
        assert len(held_by_dead) == 4
        # alive, it keeps them: the other member gets none of them
        assert await survivor.claim_stale(10) == [] and await survivor.read(10, 300) == []
        child.kill()
        child.wait(10)
        killed_at = time.monotonic()
        taken = await read_until(survivor, 4, timeout_s=traits.visibility_timeout_s * 6 + 30, claim=True)
        assert sorted(h.entry.id for h in taken) == sorted(held_by_dead)
        assert events_of(sorted(taken, key=lambda h: position_key(kind, h.entry.id))) == [event(i) for i in range(4)]
        assert time.monotonic() - killed_at < traits.visibility_timeout_s * 6 + 30
        assert all(h.attempts == (1 if traits.counts_deliveries else 0) for h in taken), [h.attempts for h in taken]
        await survivor.ack(taken)
    finally:
        child.kill()
        child.wait(10)
        await survivor.close()


async def test_renewing_keeps_a_live_members_events(durable, traits):
    await append(durable, 2)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    holder = durable.consumer(TOPIC, "sub-1", "runtime-a")
    other = durable.consumer(TOPIC, "sub-1", "runtime-b")
    try:
        held = await read_until(holder, 2)
        until = time.monotonic() + traits.visibility_timeout_s * 2.5
        while time.monotonic() < until:  # two and a half timeouts, renewed every third of one
            await holder.renew(held, attempts=2)
            assert await other.claim_stale(10) == []
            assert await other.read(10, int(traits.visibility_timeout_s * 300)) == []
        await holder.close()  # gone without acknowledging: now they go to the other member
        taken = await read_until(other, 2, timeout_s=traits.visibility_timeout_s * 6 + 30, claim=True)
        assert events_of(taken) == [event(0), event(1)]
        if traits.counts_deliveries:
            # the recorded attempt count where the engine takes one (Redis), else the deliveries
            assert all(h.attempts in (1, 2) for h in taken)
        await other.ack(taken)
    finally:
        await holder.close()
        await other.close()


# -- dead letters -----------------------------------------------------------------------------------------
async def test_a_dead_letter_keeps_the_event_the_reason_and_the_attempts(durable, traits):
    await append(durable, 2)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    member = durable.consumer(TOPIC, "sub-1", "runtime-a")
    try:
        held = await read_until(member, 2)
        dlq_id = await member.dead_letter(held[0], "rejected: 400 Bad Request", 400, 3)
        await member.dead_letter(held[1], "exhausted: 5 attempts, the last: timed out", None, 5)
        letters = await durable.dead_letters("sub-1")
        assert [d.event for d in letters] == [event(1), event(0)]  # newest first
        newest, oldest = letters
        assert (oldest.id, oldest.reason, oldest.status, oldest.attempts, oldest.source_id, oldest.topic) == (
            dlq_id, "rejected: 400 Bad Request", 400, 3, held[0].entry.id, TOPIC)
        assert (newest.reason, newest.status, newest.attempts) == (
            "exhausted: 5 attempts, the last: timed out", None, 5)
        assert abs(oldest.at_ms - time.time() * 1000) < 60_000
        assert [d.id for d in await durable.dead_letters("sub-1", before=newest.id)] == [oldest.id]
        # dead-lettered is acknowledged: nothing comes back, even after the visibility timeout
        await until_awaited(lambda: _settled(durable, 0), "the group to have nothing left", WAIT_S)
        other = durable.consumer(TOPIC, "sub-1", "runtime-b")
        try:
            assert await other.read(10, int(traits.visibility_timeout_s * 1500)) == []
            assert await other.claim_stale(10) == []
        finally:
            await other.close()
    finally:
        await member.close()


async def test_dead_letters_put_back_reach_this_subscription_only(durable):
    await append(durable, 3)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    await durable.ensure_group(TOPIC, "sub-2", "0")
    member = durable.consumer(TOPIC, "sub-1", "runtime-a")
    bystander = durable.consumer(TOPIC, "sub-2", "runtime-a")
    try:
        held = await read_until(member, 3)
        for h in held:
            await member.dead_letter(h, "rejected: 410 Gone", 410, 1)
        seen = await read_until(bystander, 3)
        await bystander.ack(seen)
        oldest = (await durable.dead_letters("sub-1"))[-1]
        assert await durable.redeliver("sub-1", [oldest.id, "0-999999"], by="alice") == 1
        [back] = await read_until(member, 1)
        assert (back.source, back.entry.event, back.attempts) == ("redeliver", event(0), 0)
        await member.ack([back])
        assert await durable.redeliver("sub-1", None, by="bob") == 2
        rest = await read_until(member, 2)
        assert sorted(events_of(rest)) == sorted([event(1), event(2)]) and {h.source for h in rest} == {"redeliver"}
        await member.ack(rest)
        assert await durable.dead_letters("sub-1") == []
        assert await member.read(10, 300) == []
        assert await bystander.read(10, 300) == []  # the other subscription got nothing again
    finally:
        await member.close()
        await bystander.close()


# -- lag, pending, removal ------------------------------------------------------------------------------
async def test_lag_and_pending(durable, traits):
    await append(durable, 10)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    info = await durable.group_info(TOPIC, "sub-1")
    assert info.lag == 10 and info.pending in (0, None)
    member = durable.consumer(TOPIC, "sub-1", "runtime-a")
    try:
        held = await read_until(member, 4)
        assert len(held) == 4
        await member.ack(held[:2])
        # Kafka: everything after the committed offset. NATS applies an ack a moment after
        # receiving it, so the figures are waited for; they must become exactly these.
        expected = (8, None) if traits.lag_includes_pending else (6, 2)

        seen = []

        async def figures() -> bool:
            info = await durable.group_info(TOPIC, "sub-1")
            seen.append((info.lag, info.pending))
            return seen[-1] == expected

        try:
            await until_awaited(figures, f"lag and pending {expected}")
        except pytest.fail.Exception as error:
            pytest.fail(f"{error}; last seen {seen[-3:]}")
    finally:
        await member.close()


async def test_removing_a_group(durable):
    await append(durable, 2)
    await durable.ensure_group(TOPIC, "sub-1", "0")
    assert await durable.group_info(TOPIC, "sub-1") is not None
    assert await durable.remove_group(TOPIC, "sub-1") is True
    assert await durable.group_info(TOPIC, "sub-1") is None
    assert await durable.remove_group(TOPIC, "sub-1") is False
    assert await durable.length(TOPIC) == 2  # the topic's events stay


# -- range reads (the event browser) -----------------------------------------------------------------
async def test_range_reads_newest_first_by_position_and_around_a_time(durable):
    ids = await append(durable, 5)
    at = await _time_after_last(durable)
    ids += await append(durable, 5, start=5)
    newest = await durable.read_range(TOPIC, count=3, newest_first=True)
    assert [e.event for e in newest] == [event(9), event(8), event(7)]
    page = await durable.read_range(TOPIC, count=3, newest_first=True, before=newest[-1].id)
    assert [e.event for e in page] == [event(6), event(5), event(4)]
    assert [e.id for e in await durable.read_range(TOPIC, count=2, after=ids[2])] == ids[3:5]
    assert [e.id for e in await durable.read_range(TOPIC, count=10, after=ids[2], before=ids[5])] == ids[3:5]
    # around a time: what came before it, newest first, and what came from it on
    before = await durable.read_range(TOPIC, count=3, newest_first=True, to_ms=at)
    assert [e.event for e in before] == [event(4), event(3), event(2)]
    since = await durable.read_range(TOPIC, count=3, from_ms=at)
    assert [e.event for e in since] == [event(5), event(6), event(7)]
    assert [e.event for e in await durable.read_range(TOPIC, count=10, from_ms=at, to_ms=at)] == []
    assert await durable.read_range(TOPIC, count=10, from_ms=int(time.time() * 1000) + 60_000) == []


# -- retention --------------------------------------------------------------------------------------------
async def test_retention_trims_by_length_and_by_age(durable, kind):
    await append(durable, 400, batch=100)
    if kind == "kafka":
        # Tansu answers DeleteRecords by dropping the connection; Apache Kafka trims (compose stack)
        with pytest.raises(StoreUnsupported, match="DeleteRecords"):
            await durable.trim(TOPIC, Retention(max_length=50))
        assert await durable.length(TOPIC) == 400
        return
    removed = await durable.trim(TOPIC, Retention(max_length=50))
    remaining = await durable.length(TOPIC)
    assert removed == 400 - remaining
    assert 50 <= remaining < 50 + 200  # Redis trims whole nodes of 100 (approximate), NATS exactly
    newest = await durable.read_range(TOPIC, count=50, newest_first=True)
    assert [e.event for e in newest] == [event(i) for i in range(399, 349, -1)]  # the newest stay
    await until(lambda: _later_than(newest[0].time_ms + 1000), "a second to pass", WAIT_S)
    await until_awaited(lambda: _trimmed_to_nothing(durable), "age retention to empty the topic", WAIT_S)


async def _trimmed_to_nothing(store) -> bool:
    await store.trim(TOPIC, Retention(max_age_seconds=1))
    return await store.length(TOPIC) == 0


async def test_retention_given_on_append_applies(durable, kind):
    retention = Retention(max_length=100)
    for first in range(0, 1000, 100):
        await durable.append_many([AppendEntry(TOPIC, event(i), retention) for i in range(first, first + 100)])
    if kind == "kafka":  # a count limit has no Kafka setting; trim applies it where the broker can
        assert await durable.length(TOPIC) == 1000
    else:
        assert 100 <= await durable.length(TOPIC) < 300


# -- connections ------------------------------------------------------------------------------------------
BAD_URLS = {
    "redis": "redis://127.0.0.1:notaport/0",
    "kafka": "kafka://",
    "nats": "nats://",
    "mqtt": "mqtt://127.0.0.1:99999",
}


async def test_a_bad_url_names_the_store(any_kind):
    with pytest.raises(ValueError, match="event store 'orders'"):
        store = open_store(BAD_URLS[any_kind], name="orders")
        await store.connect()


async def test_an_unreachable_server_names_the_store_at_start(any_kind):
    kind = any_kind
    port = free_port()  # nothing listens there
    url = {"redis": f"redis://127.0.0.1:{port}/0", "kafka": f"kafka://127.0.0.1:{port}",
           "nats": f"nats://127.0.0.1:{port}", "mqtt": f"mqtt://127.0.0.1:{port}"}[kind]
    store = open_store(url, name="orders", connect_timeout_s=1) if kind != "redis" else open_store(url, name="orders")
    started = time.monotonic()
    with pytest.raises(StoreError, match=rf"event store 'orders' \({kind} at .*{port}.*cannot be reached"):
        await store.connect()
    assert time.monotonic() - started < 15
    assert await store.ping() is False
    await store.close()


@pytest.mark.parametrize("engine", [k for k, t in TRAITS.items() if t.survives_restart is None])
async def test_nothing_acknowledged_is_lost_when_the_server_restarts(engine, tmp_path, prefix):
    """A private server (not the machine's), killed with SIGKILL and started again on the same
    port and data: every append it acknowledged is there, every event not acknowledged comes
    back (acknowledged ones stay so where the engine writes acks before answering), and the same
    store object carries on once the server answers."""
    server = (private_redis if engine == "redis" else private_nats)(tmp_path / engine).start()
    url = f"redis://127.0.0.1:{server.port}/0" if engine == "redis" else f"nats://127.0.0.1:{server.port}"
    store = open_store(url, prefix=prefix, name="restarted", visibility_timeout_s=1.0)
    try:
        await store.connect()
        ids = await append(store, 20)
        await store.ensure_group(TOPIC, "sub-1", "0")
        member = store.consumer(TOPIC, "sub-1", "runtime-a")
        held = await read_until(member, 10)
        await member.ack(held[:6])
        server.kill()
        with pytest.raises(StoreError):
            await store.append_many([AppendEntry(TOPIC, event(99))])
        server.start()
        more = await until_awaited(lambda: _append_once(store), "appending again after the restart", WAIT_S)
        assert [e.id for e in await store.read_range(TOPIC, count=100)] == ids + more
        await member.close()
        member = store.consumer(TOPIC, "sub-1", "runtime-a")
        unacked = {event(i) for i in range(6, 20)} | {event(20)}
        if TRAITS[engine].acks_survive_crash:
            rest = await read_until(member, 15, claim=True)
            assert sorted(events_of(rest)) == sorted(unacked)
        else:  # at least once: every unacknowledged one again, and perhaps some acknowledged ones
            rest = []
            await until_awaited(lambda: _read_more(member, rest, unacked), "every unacknowledged event again",
                                WAIT_S)
            assert set(events_of(rest)) <= unacked | {event(i) for i in range(6)}
        await member.ack(rest)
        await member.close()
    finally:
        await store.close()
        server.stop()


async def _read_more(member, held, wanted) -> bool:
    held += await member.claim_stale(100) + await member.read(100, 200)
    return set(events_of(held)) >= wanted


async def _append_once(store):
    try:
        return await store.append_many([AppendEntry(TOPIC, event(20))])
    except StoreError:
        return None


def test_every_engine_says_why_it_is_not_restarted():
    assert all(t.survives_restart is None or t.survives_restart for t in TRAITS.values())


# -- MQTT: a transport, tested as one ----------------------------------------------------------------------
@pytest.fixture
async def mqtt(request, prefix):
    store = open_store(f"{engine_url('mqtt', request)}/{prefix.rstrip(':')}", prefix=prefix, name="devices")
    await store.connect()
    yield store
    await store.close()


async def _take(ingest_iter, count: int, timeout_s: float = 10.0, ack=None) -> list:
    """``count`` messages; with ``ack``, each acknowledged as it comes (the broker sends no more
    than its in-flight window, 20 on Mosquitto, ahead of the acknowledgements)."""
    got = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            got.append(await anext(ingest_iter))
            if ack is not None:
                ack(got[-1])
    return got


async def test_mqtt_ingest_receives_what_is_published_byte_exact_and_in_order(mqtt):
    payloads = [event(i) for i in range(50)] + [b"\x00\xff binary \xfe"]
    async with mqtt.ingest([TOPIC, "devices.*"], session="runtime-a") as ingest:
        messages = aiter(ingest)
        assert await mqtt.append_many([AppendEntry(TOPIC, p) for p in payloads]) == [""] * 51
        got = await _take(messages, 51, ack=ingest.ack)
        assert [m.payload for m in got] == payloads and {m.topic for m in got} == {TOPIC}
        assert got[0].mqtt_topic == f"{mqtt.root}/orders/created"
        await mqtt.append_many([AppendEntry("devices.thermo.reading", b"21.5")])
        [reading] = await _take(messages, 1, ack=ingest.ack)
        assert (reading.topic, reading.payload) == ("devices.thermo.reading", b"21.5")


async def test_mqtt_ingest_gets_again_what_it_did_not_acknowledge_and_what_came_while_away(mqtt):
    async with mqtt.ingest([TOPIC], session="runtime-a") as ingest:
        messages = aiter(ingest)
        await mqtt.append_many([AppendEntry(TOPIC, event(i)) for i in range(3)])
        first = await _take(messages, 3)
        ingest.ack(first[0])  # the runtime stops before dealing with the other two
    await mqtt.append_many([AppendEntry(TOPIC, event(i)) for i in range(3, 5)])  # while it is away
    async with mqtt.ingest([TOPIC], session="runtime-a") as ingest:
        again = await _take(aiter(ingest), 4, ack=ingest.ack)
        assert [m.payload for m in again] == [event(i) for i in range(1, 5)]


async def test_mqtt_names_outside_the_mesh_are_reported_not_guessed(mqtt):
    async with mqtt.ingest(["*"], session="runtime-a") as ingest:
        messages = aiter(ingest)
        publisher = mqtt._client()
        async with publisher:
            await publisher.publish(f"{mqtt.root}/Bad Name/x", b"?", qos=1)
        [odd] = await _take(messages, 1)
        assert (odd.topic, odd.mqtt_topic) == (None, f"{mqtt.root}/Bad Name/x")
        ingest.ack(odd)


async def test_mqtt_refuses_what_only_a_store_can_do(mqtt):
    for call in (mqtt.ensure_group(TOPIC, "sub-1"), mqtt.read_range(TOPIC, count=1), mqtt.dead_letters("sub-1"),
                 mqtt.group_info(TOPIC, "sub-1"), mqtt.length(TOPIC)):
        with pytest.raises(StoreUnsupported, match=r"event store 'devices' \(mqtt at .*\) is a transport"):
            await call
    assert await mqtt.trim(TOPIC, Retention(max_length=1)) == 0
    assert await mqtt.ping() is True
