"""The live tail over its websocket: a real runtime taps, the real Redis carries, the real ASGI app
and channel layer serve; who sees what, filters, pacing, pause, bad input, rights that change."""

from __future__ import annotations

import asyncio
import base64

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from subscriptions.models import Subscription
from tests.portal_support.waiting import until
from tracing.consumers import CLOSE_NOT_FOUND, CLOSE_SIGNED_OUT
from tracing.notify import notify, user_group

from .conftest import order

pytestmark = pytest.mark.django_db(transaction=True)


def tail(mesh, topic: str = "orders.created") -> str:
    return f"/ws/tracing/topics/{mesh.topics[topic].pk}/tail/"


async def test_a_member_sees_events_published_through_a_runtime_whole(live_runtime, sockets, bob):
    socket = await sockets(tail(live_runtime.mesh), bob)
    hello = await socket.expect("hello")
    assert hello == {"type": "hello", "topic": "orders.created", "payload": True, "rate": 50, "max_rate": 50}
    await live_runtime.watched("orders.created")
    assert await live_runtime.publish("orders.created", order(1)) == 202
    [event] = (await socket.expect("events"))["events"]
    assert event["attributes"]["id"] == "evt-1" and event["attributes"]["customer"] == "c-1"
    assert event["data"] == '{"order_id":"o-1","amount":1}' and event["data_encoding"] == "json"
    assert event["outcome"] == "stored" and event["application"] == "checkout" and event["topic"] == "orders.created"
    assert "masked" not in event


@pytest.mark.parametrize(("persona", "payload"), [("alice", True), ("bob", True), ("dave", True), ("sam", True),
                                                  ("carol", False)])
async def test_each_persona_gets_the_data_or_the_masked_attributes(live_runtime, sockets, personas, persona, payload):
    socket = await sockets(tail(live_runtime.mesh), personas[persona])
    assert (await socket.expect("hello"))["payload"] is payload
    await live_runtime.watched("orders.created")
    await live_runtime.publish("orders.created", order(1))
    [event] = (await socket.expect("events"))["events"]
    if payload:
        assert event["data"] == '{"order_id":"o-1","amount":1}' and event["attributes"]["customer"] == "c-1"
    else:
        assert event["masked"] is True and "data" not in event
        assert event["attributes"] == {"id": "evt-1", "type": "com.example.order.created", "source": "/checkout",
                                       "subject": "o-1"}
        assert event["data_size"] == len(b'{"order_id":"o-1","amount":1}')
        assert "c-1" not in str(event)


async def test_an_approved_subscription_shows_its_team_the_payload(live_runtime, sockets, carol):
    mesh = live_runtime.mesh
    await database_sync_to_async(Subscription.objects.create)(
        topic=mesh.topics["orders.created"], application=mesh.apps["shipping"], state=Subscription.ACTIVE,
        webhook_url="http://127.0.0.1:9/hook")
    socket = await sockets(tail(mesh), carol)
    assert (await socket.expect("hello"))["payload"] is True


async def test_anonymous_unknown_and_invisible_are_closed_with_a_code(live_runtime, sockets, bob):
    assert await (await sockets(tail(live_runtime.mesh))).closed() == CLOSE_SIGNED_OUT
    assert await (await sockets("/ws/tracing/topics/999999/tail/", bob)).closed() == CLOSE_NOT_FOUND
    inactive = await database_sync_to_async(User.objects.create_user)("ivy", is_active=False)
    assert await (await sockets(tail(live_runtime.mesh), inactive)).closed() == CLOSE_SIGNED_OUT


async def test_two_viewers_make_one_subscription_and_the_watch_key_expires_after_the_last_leaves(
        live_runtime, sockets, bob, alice, redis_client, settings):
    settings.MESH_TAP_WATCH_TTL = 2
    settings.MESH_TAP_WATCH_GRACE = 0
    keys = live_runtime.runtime.tap.keys
    channel, watch = keys.tap("orders.created"), keys.tap_watch("orders.created")
    first = await sockets(tail(live_runtime.mesh), bob)
    second = await sockets(tail(live_runtime.mesh), alice)
    await first.expect("hello")
    await second.expect("hello")
    assert dict(redis_client.pubsub_numsub(channel)) == {channel.encode(): 1}
    # renewed while watched: it outlives its TTL several times over
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 3 * settings.MESH_TAP_WATCH_TTL:
        assert redis_client.exists(watch), f"the watch key lapsed after {loop.time() - started:.1f} s"
        await asyncio.sleep(0.2)  # observing over a span of time, not waiting for a condition
    await live_runtime.watched("orders.created")
    await live_runtime.publish("orders.created", order(1))
    assert (await first.expect("events"))["events"][0]["attributes"]["id"] == "evt-1"
    assert (await second.expect("events"))["events"][0]["attributes"]["id"] == "evt-1"

    await first.close()
    assert dict(redis_client.pubsub_numsub(channel)) == {channel.encode(): 1}  # one viewer left
    await second.close()
    await until(lambda: dict(redis_client.pubsub_numsub(channel)) == {channel.encode(): 0}, "the unsubscribe")
    await until(lambda: not redis_client.exists(watch), "the watch key to expire", timeout=5)
    await until(lambda: "orders.created" not in live_runtime.runtime.tap.watched, "the runtime to stop tapping")


async def test_a_socket_quiet_for_longer_than_the_redis_timeout_still_follows_changes(live_runtime, sockets, bob):
    """The channel layer waits 5 s per read, redis-py's default socket timeout is 5 s too: without
    a longer one in CHANNEL_LAYERS, a consumer that hears nothing for 5 s dies."""
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + 7
    while loop.time() < quiet_until:  # observe a quiet span: nothing arrives, nothing breaks
        assert await socket.communicator.receive_nothing(0.5)
    await database_sync_to_async(User.objects.filter(pk=bob.pk).update)(is_active=False)
    await database_sync_to_async(notify_user)(bob.pk)
    assert await socket.closed() == CLOSE_SIGNED_OUT


def notify_user(pk: int) -> None:
    notify(user_group(pk))


async def test_bad_messages_are_answered_with_the_path_and_the_socket_stays_open(live_runtime, sockets, bob, carol):
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")
    cases = [
        ("{not json", "message", "is not valid JSON"),
        ([1, 2], "message", "must be a JSON object with a type"),
        ({"type": "explode"}, "type", "must be one of filter, pause, resume, rate; got 'explode'"),
        ({"type": "pause", "now": True}, "now", "is not a field of a pause message"),
        ({"type": "filter", "filters": [{"exact": {"type": "a"}}, {"any": [{"prefix": {"Type": "x"}}]}]},
         "filters[1].any[0].prefix", 'attribute name "Type" must be lowercase letters and digits'),
        ({"type": "filter", "filters": [{"sql": "1=1"}]}, "filters[0]", "the sql dialect is not supported"),
        ({"type": "filter", "filters": {"exact": {}}}, "filters", "must be a list of filters, got dict"),
        ({"type": "filter", "text": 7}, "text", "must be a string, got int"),
        ({"type": "filter", "text": "x" * 201}, "text", "must be at most 200 characters, got 201"),
        ({"type": "rate", "value": 51}, "value", "must be a whole number of events a second from 1 to 50; got 51"),
        ({"type": "rate", "value": True}, "value", "must be a whole number"),
        ("x" * 20000, "message", "must be at most 16384 characters, got 20000"),
    ]
    for message, field, text in cases:
        await socket.send(message)
        error = await socket.expect("error")
        assert error["field"] == field and text in error["message"], (message, error)
    await socket.send(binary=b"\x00")
    assert (await socket.expect("error"))["field"] == "message"
    # still open and working: a good filter is applied
    await socket.send({"type": "filter", "filters": [{"exact": {"customer": "c-2"}}]})
    assert (await socket.expect("filter"))["filters"] == [{"exact": {"customer": "c-2"}}]
    await live_runtime.watched("orders.created")
    await live_runtime.publish("orders.created", [order(1), order(2), order(3)])
    assert [e["attributes"]["id"] for e in (await socket.expect("events"))["events"]] == ["evt-2"]

    # who sees attributes only may filter on those only: a filter on an extension would tell what the mask hides
    masked = await sockets(tail(live_runtime.mesh), carol)
    await masked.expect("hello")
    await masked.send({"type": "filter", "filters": [{"not": {"exact": {"customer": "c-2"}}}]})
    error = await masked.expect("error")
    assert error["field"] == "filters[0].not.exact.customer" and "you see attributes only" in error["message"]


async def test_filters_and_the_text_match_apply_on_the_server(live_runtime, sockets, bob):
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")
    either = {"any": [{"suffix": {"subject": "-1"}}, {"exact": {"id": "evt-3"}}]}
    await socket.send({"type": "filter", "filters": [either], "text": "EVT"})
    await socket.expect("filter")
    await live_runtime.watched("orders.created")
    await live_runtime.publish("orders.created", [order(i) for i in range(1, 5)])
    assert [e["attributes"]["id"] for e in (await socket.expect("events"))["events"]] == ["evt-1", "evt-3"]
    await socket.send({"type": "filter", "text": "o-4"})  # the subject
    await socket.expect("filter")
    await live_runtime.publish("orders.created", [order(i) for i in range(1, 5)])
    assert [e["attributes"]["id"] for e in (await socket.expect("events"))["events"]] == ["evt-4"]
    stats = await socket.expect("stats", where=lambda m: m["totals"]["received"] == 8)
    assert stats["totals"] == {"received": 8, "matched": 3, "shown": 3, "skipped": 0, "paused": 0, "lost": 0}


async def test_pause_counts_what_arrives_and_resume_goes_on_live(live_runtime, sockets, bob):
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")
    await live_runtime.watched("orders.created")
    await socket.send({"type": "pause"})
    await socket.expect("paused")
    await live_runtime.publish("orders.created", [order(i) for i in range(1, 4)])
    stats = await socket.expect("stats", where=lambda m: m["totals"]["paused"] == 3)
    assert stats["paused"] is True and stats["totals"]["shown"] == 0
    await socket.send({"type": "resume"})
    assert (await socket.expect("resumed"))["arrived"] == 3
    await live_runtime.publish("orders.created", order(4))
    assert [e["attributes"]["id"] for e in (await socket.expect("events"))["events"]] == ["evt-4"]
    assert not [e for e in socket.events() if e["attributes"]["id"] != "evt-4"]  # nothing from the pause


async def test_above_the_rate_shown_plus_skipped_is_exactly_what_was_published(live_runtime, sockets, bob, settings):
    settings.MESH_TAIL_RATE = 20
    socket = await sockets(tail(live_runtime.mesh), bob)
    assert (await socket.expect("hello"))["rate"] == 20
    await live_runtime.watched("orders.created")
    published = 0
    for start in range(0, 600, 20):  # 600 events as fast as the runtime takes them
        assert await live_runtime.publish("orders.created", order(start)) == 202
        assert await live_runtime.publish("orders.created", [order(i) for i in range(start + 1, start + 20)]) == 202
        published += 20
    stats = await socket.expect("stats", where=lambda m: m["totals"]["shown"] + m["totals"]["skipped"] >= published)
    totals = stats["totals"]
    assert totals["shown"] + totals["skipped"] == published == totals["matched"] == totals["received"]
    assert totals["skipped"] > 0 and len(socket.events()) == totals["shown"]
    assert len({e["attributes"]["id"] for e in socket.events()}) == totals["shown"]  # no copy twice


async def test_copies_a_runtime_could_not_send_are_counted_as_lost(live_runtime, sockets, bob):
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")
    await live_runtime.watched("orders.created")
    live_runtime.runtime.tap.max_buffer_bytes = 1  # one copy waits for Redis, the rest of the turn is dropped
    assert await live_runtime.publish("orders.created", [order(i) for i in range(1, 6)]) == 202
    assert [e["attributes"]["id"] for e in (await socket.expect("events"))["events"]] == ["evt-1"]
    stats = await socket.expect("stats", where=lambda m: m["totals"]["lost"] == 4)
    assert stats["totals"] == {"received": 1, "matched": 1, "shown": 1, "skipped": 0, "paused": 0, "lost": 4}


async def test_binary_data_is_shown_in_base64_and_its_size_to_everyone(live_runtime, sockets, bob, carol):
    member, outsider = await sockets(tail(live_runtime.mesh), bob), await sockets(tail(live_runtime.mesh), carol)
    await member.expect("hello")
    await outsider.expect("hello")
    await live_runtime.watched("orders.created")
    data = b'{"order_id": "o-1"}'  # bytes that happen to be JSON: the schema checks them
    binary = order(1, datacontenttype="application/octet-stream", data_base64=base64.b64encode(data).decode())
    del binary["data"]
    assert await live_runtime.publish("orders.created", binary) == 202
    [whole] = (await member.expect("events"))["events"]
    assert whole["data_encoding"] == "base64" and base64.b64decode(whole["data"]) == data
    assert whole["data_size"] == len(data) and whole["attributes"]["datacontenttype"] == "application/octet-stream"
    [masked] = (await outsider.expect("events"))["events"]
    assert masked["data_size"] == len(data) and "data" not in masked and masked["masked"] is True


async def test_a_deactivated_user_is_closed_out_at_once(live_runtime, sockets, bob):
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")

    def deactivate():
        user = User.objects.get(pk=bob.pk)
        user.is_active = False
        user.save()

    await database_sync_to_async(deactivate)()  # the save announces it (tracing.signals)
    assert await socket.closed(timeout=3) == CLOSE_SIGNED_OUT


async def test_a_revoked_subscription_masks_its_team_from_the_next_event(live_runtime, sockets, carol):
    mesh = live_runtime.mesh
    subscription = await database_sync_to_async(Subscription.objects.create)(
        topic=mesh.topics["orders.created"], application=mesh.apps["shipping"], state=Subscription.ACTIVE,
        webhook_url="http://127.0.0.1:9/hook")
    socket = await sockets(tail(mesh), carol)
    assert (await socket.expect("hello"))["payload"] is True
    await live_runtime.watched("orders.created")
    await live_runtime.publish("orders.created", order(1))
    assert "data" in (await socket.expect("events"))["events"][0]

    subscription.state = Subscription.REVOKED
    await database_sync_to_async(subscription.save)()
    assert (await socket.expect("access", timeout=3))["payload"] is False
    await live_runtime.publish("orders.created", order(2))
    [event] = (await socket.expect("events"))["events"]
    assert event["masked"] is True and "data" not in event and "customer" not in event["attributes"]


async def test_changes_that_announce_nothing_are_caught_by_the_periodic_check(live_runtime, sockets, bob, settings):
    settings.MESH_TAIL_RECHECK_SECONDS = 1
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")
    await database_sync_to_async(User.objects.filter(pk=bob.pk).update)(is_active=False)  # no signal
    assert await socket.closed(timeout=4) == CLOSE_SIGNED_OUT


async def test_signing_out_ends_the_socket(live_runtime, sockets, bob):
    socket = await sockets(tail(live_runtime.mesh), bob)
    await socket.expect("hello")

    def sign_out():  # in the browser whose session the socket has
        client = Client()
        client.cookies[django_settings.SESSION_COOKIE_NAME] = socket.session
        assert client.post("/logout/").status_code == 302

    await database_sync_to_async(sign_out)()
    assert await socket.closed(timeout=3) == CLOSE_SIGNED_OUT
