"""The Delivery tab of a subscription whose topic lives on NATS JetStream or Kafka: lag, dead
letters and redelivery as the engine reports and does them, reached with the portal's own
connection (``MESH_STORES``), against the machine's NATS and a Tansu broker."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest
from django.urls import reverse

from meshruntime.store import AppendEntry, Store, open_store, redact
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.personas import client_for
from tests.stores.servers import answers, tansu
from topics.models import EventStore

pytestmark = pytest.mark.django_db

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="module")
def kafka_url(tmp_path_factory):
    server = tansu(tmp_path_factory.mktemp("tansu")).start()
    yield f"kafka://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(params=["nats", "kafka"])
def engine_url(request) -> tuple[str, str]:
    if request.param == "kafka":
        return "kafka", request.getfixturevalue("kafka_url")
    if not answers(int(NATS_URL.rsplit(":", 1)[1])):
        pytest.fail(f"the machine's NATS does not answer at {redact(NATS_URL)} (.ci/run starts it)")
    return "nats", NATS_URL


@pytest.fixture
def sub(engine_url, settings, key_prefix, payments, logistics, redis_client) -> Subscription:
    kind, url = engine_url
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_STORES = f"events={url}"
    store = EventStore.objects.create(name="events", kind=kind, connection="events")
    topic = make_topic(payments, store, "orders.created")
    return make_subscription(make_app(logistics, "tracker"), topic, Subscription.ACTIVE)


def on_engine(settings, engine_url, work):
    async def run():
        store = open_store(engine_url[1], prefix=settings.MESH_KEY_PREFIX, name="events", visibility_timeout_s=6)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def event(i: int) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"e{i}", "source": "/shop", "type": "t", "data": {"i": i}})


def test_the_tab_shows_the_engines_figures_and_redelivers_there(sub, settings, engine_url, personas):
    group = sub.subscription_id

    async def deliver_with_one_dead_letter(store: Store):
        await store.ensure_group("orders.created", group, "0")
        await store.append_many([AppendEntry("orders.created", event(i)) for i in range(3)])
        member = store.consumer("orders.created", group, "rt-1")
        held = []
        while len(held) < 3:
            held += await member.read(3 - len(held), 500)
        await member.dead_letter(held[1], "rejected: HTTP 410: gone", 410, 1)
        await member.ack([held[0], held[2]])
        await member.close()

    on_engine(settings, engine_url, deliver_with_one_dead_letter)
    carol = client_for(personas["carol"])
    url = reverse("subscriptions:subscription_delivery", args=[sub.pk])
    response = carol.get(url)
    assert response.status_code == 200
    state = response.context["state"]
    assert state.group_exists and state.lag == 0 and state.dead_letters == 1
    page = response.content.decode()
    assert "rejected: HTTP 410: gone" in page and 'data-testid="redeliver-one"' in page
    [(letter, _event)] = response.context["letters"]
    assert letter.event_id == "e1" and letter.status == 410 and letter.at is not None

    response = carol.post(reverse("subscriptions:subscription_redeliver", args=[sub.pk]), {"dlq_id": letter.id},
                          follow=True)
    assert "1 dead letter put back for" in response.content.decode()

    async def read_back(store: Store):
        member = store.consumer("orders.created", group, "rt-1")
        try:
            for _ in range(20):
                if held := await member.read(10, 500):
                    await member.ack(held)
                    return [(h.source, orjson.loads(h.entry.event)["id"]) for h in held]
            return []
        finally:
            await member.close()

    assert on_engine(settings, engine_url, read_back) == [("redeliver", "e1")]
    assert carol.get(url).context["state"].dead_letters == 0


def test_skip_to_now_says_it_works_on_the_mesh_redis_only(sub, personas):
    response = client_for(personas["carol"]).post(
        reverse("subscriptions:subscription_skip_to_now", args=[sub.pk]), {"confirm": "yes"}, follow=True)
    assert "skip to now works on the mesh&#x27;s Redis only" in response.content.decode()


def test_without_a_connection_the_tab_says_which_setting_to_give(sub, settings, personas):
    settings.MESH_STORES = ""
    response = client_for(personas["dave"]).get(reverse("subscriptions:subscription_delivery", args=[sub.pk]))
    assert response.status_code == 200
    assert "add events=&lt;url&gt; to its MESH_STORES setting" in response.content.decode()
