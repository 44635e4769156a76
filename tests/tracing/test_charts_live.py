"""Live charts over ``/ws/charts/``: shared pollers, a real Prometheus, its failures, and who sees what.

The sockets go through the project's whole ASGI stack (session cookie, origin check, router,
consumer) on the suite's real Redis channel layer; Prometheus is Debian's, on a free port.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.test import Client

from governance.models import Application
from rollout import redis_keys
from subscriptions.models import Subscription
from topics.models import Topic
from tracing import chart_consumer, charts, pollers

pytestmark = [pytest.mark.django_db(transaction=True)]

TOPIC_CHARTS = [c.name for c in charts.TOPIC_CHARTS]


@pytest.fixture
async def close_thread_connections():
    """The consumers reach the database from worker threads; close their connections after, or
    PostgreSQL refuses to drop the test database."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
async def hub_cleanup():
    """Stop whatever pollers a test leaves running on its loop."""
    yield
    hub = pollers.hub()
    for key in list(hub.pollers):
        hub.pollers[key].viewers = 1
        await hub.leave(key)
    await hub.redis.aclose()
    pollers._hubs.pop(asyncio.get_running_loop(), None)


@pytest.fixture(scope="module")
def idle_prometheus(start_module_prometheus):
    """A Prometheus with nothing to scrape: every query is answered (empty) and counted."""
    return start_module_prometheus("global: {scrape_interval: 1s}\nscrape_configs: []\n")


@pytest.fixture
def prometheus_settings(settings, mesh_prefix, idle_prometheus):
    settings.PROMETHEUS_URL = idle_prometheus.url
    settings.PROMETHEUS_SCRAPE_INTERVAL = 1
    settings.PROMETHEUS_TIMEOUT_SECONDS = 1
    return idle_prometheus


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


class Socket:
    """A websocket client of the project's ASGI application (``channels.testing`` needs Daphne,
    which the project does not use)."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        from meshadmin.asgi import application

        self.app = ApplicationCommunicator(application, {
            "type": "websocket", "path": "/ws/charts/", "headers": headers, "subprotocols": [],
            "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("localhost", 80)})

    async def connect(self, timeout: float = 5) -> tuple[bool, int | None]:
        await self.app.send_input({"type": "websocket.connect"})
        reply = await self.app.receive_output(timeout)
        return reply["type"] == "websocket.accept", reply.get("code")

    async def send_to(self, text_data: str) -> None:
        await self.app.send_input({"type": "websocket.receive", "text": text_data})

    async def send_json_to(self, data) -> None:
        await self.send_to(json.dumps(data))

    async def receive_output(self, timeout: float):
        return await self.app.receive_output(timeout)

    async def receive_json_from(self, timeout: float) -> dict:
        message = await self.app.receive_output(timeout)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def disconnect(self) -> None:
        await self.app.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.app.wait(5)


class Viewer:
    """One browser tab's websocket."""

    def __init__(self, cookie: bytes | None) -> None:
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
        if cookie is not None:
            headers.append((b"cookie", cookie))
        self.socket = Socket(headers)
        self.data: dict[str, list[dict]] = {}

    @classmethod
    async def of(cls, user) -> Viewer:
        viewer = cls(await sync_to_async(_cookie)(user))
        connected, _ = await viewer.socket.connect(5)
        assert connected
        return viewer

    async def watch(self, charts_and_objects: list[tuple[str, int | None]], range_name: str = "15m") -> None:
        await self.socket.send_json_to({"watch": [{"id": f"c{n}", "chart": chart, "object": obj}
                                                  for n, (chart, obj) in enumerate(charts_and_objects)],
                                        "range": range_name})

    async def receive(self, timeout: float = 10) -> dict:
        message = await self.socket.receive_json_from(timeout)
        if message.get("type") == "data":
            self.data.setdefault(message["id"], []).append(message)
        return message

    async def until(self, condition, timeout: float = 15, what: str = "a message") -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {what}")
            message = await self.receive(left)
            if condition(message):
                return message

    async def close(self) -> None:
        await self.socket.disconnect()


async def _topic(store, payments) -> Topic:
    return await sync_to_async(Topic.objects.create)(name="orders.created", team=payments, store=store)


# -- one query per distinct chart per refresh ---------------------------------------------------------

async def _settled(hub: pollers.PollerHub, polls: int, timeout: float = 30) -> None:
    """Every poller of ``hub`` has polled ``polls`` times (they tick together, on the clock)."""
    deadline = time.monotonic() + timeout
    while min((p.polls for p in hub.pollers.values()), default=0) < polls:
        if time.monotonic() > deadline:
            pytest.fail(f"the pollers did not reach {polls} polls: {[p.polls for p in hub.pollers.values()]}")
        waiting = [p.polled.wait() for p in hub.pollers.values() if p.polls < polls]
        await asyncio.wait([asyncio.ensure_future(w) for w in waiting], timeout=1)


async def test_fifty_viewers_of_a_topic_cost_one_query_per_chart_per_refresh(
        prometheus_settings, personas, store, payments, close_thread_connections, hub_cleanup):
    prometheus = prometheus_settings
    topic = await _topic(store, payments)
    users = list(personas.values())
    viewers = [await Viewer.of(users[n % len(users)]) for n in range(50)]
    for viewer in viewers:
        await viewer.watch([(name, topic.pk) for name in TOPIC_CHARTS])
    for viewer in viewers:
        while len(viewer.data) < len(TOPIC_CHARTS):
            await viewer.receive()
    hub = pollers.hub()
    assert len(hub.pollers) == len(TOPIC_CHARTS)  # one poller per distinct query, not per viewer
    # The first poll is at once, the next ones on the clock: count from just after a clock tick,
    # when every poller has answered and the next tick is a refresh away.
    await _settled(hub, 2)
    polls = min(p.polls for p in hub.pollers.values())
    before = await sync_to_async(prometheus.queries_answered)()
    await _settled(hub, polls + 2)
    after = await sync_to_async(prometheus.queries_answered)()
    assert after - before == 2 * len(TOPIC_CHARTS)
    for viewer in viewers:  # and every viewer got every chart, every refresh
        while min(len(answers) for answers in viewer.data.values()) < 3:
            await viewer.receive()
        assert all(m["error"] is None for answers in viewer.data.values() for m in answers)
    for viewer in viewers:
        await viewer.close()
    assert hub.pollers == {}  # the last viewer gone, nothing polls


async def test_two_portal_processes_share_one_query_through_the_lease(prometheus_settings, close_thread_connections,
                                                                       hub_cleanup):
    """Two hubs stand for two portal processes with viewers of the same chart: one lease, one query."""
    prometheus = prometheus_settings
    query = charts.CHARTS["mesh.events"].query(None, "15m")
    first, second = pollers.hub(), pollers.PollerHub()
    try:
        await first.join(query)
        await second.join(query)
        group = [first.pollers[query.key], second.pollers[query.key]]
        deadline = time.monotonic() + 30
        while sum(p.polls for p in group) < 2:  # the first poll, then one on the clock
            assert time.monotonic() < deadline, "no polls"
            await asyncio.wait([asyncio.ensure_future(p.polled.wait()) for p in group], timeout=1)
        before = await sync_to_async(prometheus.queries_answered)()
        start = sum(p.polls for p in group)
        deadline = time.monotonic() + 30
        while sum(p.polls for p in group) < start + 2:
            assert time.monotonic() < deadline, "no polls"
            await asyncio.wait([asyncio.ensure_future(p.polled.wait()) for p in group], timeout=1)
        after = await sync_to_async(prometheus.queries_answered)()
        assert after - before == 2 and len({p.polls for p in group}) == 2  # only the lease holder polled
        # the holder goes (its last viewer left): the other process takes over
        holder = max(group, key=lambda p: p.polls)
        other = group[1 - group.index(holder)]
        await (first if holder is group[0] else second).leave(query.key)
        taken = other.polls
        deadline = time.monotonic() + 30
        while other.polls == taken:
            assert time.monotonic() < deadline, "nobody took the lease over"
            await asyncio.wait([asyncio.ensure_future(other.polled.wait())], timeout=1)
    finally:
        await second.leave(query.key)
        await second.redis.aclose()


# -- Prometheus down or slow --------------------------------------------------------------------------

@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a Prometheus stuck in a query)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    server.close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_slow_or_unreachable_prometheus_keeps_the_last_data_and_says_since_when(
        prometheus_settings, settings, silent_server, close_thread_connections, hub_cleanup):
    query = charts.CHARTS["mesh.events"].query(None, "15m")
    hub = pollers.hub()
    poller = pollers.Poller(hub, query)  # polled by hand here: no background task, no lease
    good = await poller.poll()
    assert good["error"] is None and good["fetched_at"]
    last = {**good, "series": [{"labels": {"series": "published"}, "points": [[good["end"], 4.0]]}]}
    await hub.redis.set(redis_keys.keys().chart_last(query.key), json.dumps(last))

    settings.PROMETHEUS_URL = silent_server
    started = time.monotonic()
    slow = await poller.poll()
    took = time.monotonic() - started
    assert 0.9 < took < 3, took  # the deadline (1 s here), never a hang
    assert slow["error"] == "Prometheus did not answer within 1 s." and "PROMETHEUS_URL" in slow["hint"]
    assert slow["series"] == last["series"] and slow["fetched_at"] == good["fetched_at"]
    since = slow["error_since"]
    assert since >= good["fetched_at"]

    settings.PROMETHEUS_URL = _closed_port()
    down = await poller.poll()
    assert down["error"] == "Prometheus is unreachable (no connection)."
    assert down["series"] == last["series"] and down["error_since"] == since  # the same outage

    settings.PROMETHEUS_URL = prometheus_settings.url
    back = await poller.poll()
    assert back["error"] is None and back["error_since"] is None


async def test_a_viewer_of_a_stuck_prometheus_gets_the_last_data_with_the_error_at_once(
        prometheus_settings, settings, silent_server, personas, close_thread_connections, hub_cleanup):
    settings.PROMETHEUS_URL = silent_server
    query = charts.CHARTS["mesh.events"].query(None, "15m")
    hub = pollers.hub()
    stale = {"key": query.key, "kind": "range", "range": "15m", "start": 1.0, "end": 901.0, "step": 5,
             "series": [{"labels": {"series": "published"}, "points": [[900.0, 2.5]]}], "fetched_at": 900.0,
             "error": "Prometheus did not answer within 1 s.", "hint": "Check …", "error_since": 901.0}
    await hub.redis.set(redis_keys.keys().chart_last(query.key), json.dumps(stale))
    viewer = await Viewer.of(personas["dave"])
    started = time.monotonic()
    await viewer.watch([("mesh.events", None)])
    first = await viewer.until(lambda m: m.get("type") == "data", timeout=5, what="the last answer")
    assert time.monotonic() - started < 1  # from Redis, not from the stuck Prometheus
    assert first["series"] == stale["series"] and first["error"] == stale["error"] and first["error_since"] == 901.0
    # the poller's own attempt ends at its deadline with the same data and the error
    second = await viewer.until(lambda m: m.get("type") == "data", timeout=10, what="the poller's answer")
    assert second["series"] == stale["series"] and second["error"] == "Prometheus did not answer within 1 s."
    await viewer.close()


async def test_without_prometheus_every_chart_says_why_and_how_to_fix_it(settings, mesh_prefix, personas,
                                                                          close_thread_connections, hub_cleanup):
    settings.PROMETHEUS_URL = ""
    settings.PROMETHEUS_UNAVAILABLE = "Prometheus is not installed on this machine."
    viewer = await Viewer.of(personas["bob"])
    await viewer.watch([("mesh.events", None), ("mesh.busiest_topics", None)])
    for _ in range(2):
        answer = await viewer.until(lambda m: m.get("type") == "data", what="an answer")
        assert answer["error"] == "Prometheus is not installed on this machine."
        assert "PROMETHEUS_URL" in answer["hint"] and "system-deps" in answer["hint"]
    await viewer.close()


async def test_a_consumer_that_dies_leaves_its_pollers(settings, mesh_prefix, personas, monkeypatch,
                                                       close_thread_connections, hub_cleanup):
    """A send to a browser already gone raises in the consumer and ends it without a disconnect;
    its pollers must stop all the same, or they poll Prometheus for nobody."""
    settings.PROMETHEUS_URL = ""

    async def broken_send(self, watch, answer):
        raise OSError("the browser is gone")

    monkeypatch.setattr(chart_consumer.ChartConsumer, "_send", broken_send)
    viewer = await Viewer.of(personas["dave"])
    await viewer.watch([("mesh.events", None), ("mesh.errors", None)])
    with pytest.raises(OSError, match="the browser is gone"):
        await viewer.socket.app.wait(10)
    assert pollers.hub().pollers == {}


# -- who sees what ------------------------------------------------------------------------------------

@pytest.fixture
async def subscriptions(store, payments, logistics):
    """Payments' private subscription (its app, its topic) and Logistics' subscription to a
    Payments topic (both teams see that one)."""

    def make():
        topic = Topic.objects.create(name="orders.created", team=payments, store=store)
        billing = Application.objects.create(name="billing", team=payments)
        shipping = Application.objects.create(name="shipping", team=logistics)
        private = Subscription.objects.create(topic=topic, application=billing, state="active",
                                              webhook_url="https://billing.example/hook")
        shared = Subscription.objects.create(topic=topic, application=shipping, state="active",
                                             webhook_url="https://shipping.example/hook")
        return private, shared

    return await sync_to_async(make)()


async def test_an_outsider_gets_no_chart_of_a_private_subscription(settings, mesh_prefix, personas, subscriptions,
                                                                    close_thread_connections, hub_cleanup):
    settings.PROMETHEUS_URL = ""
    private, shared = subscriptions
    carol = await Viewer.of(personas["carol"])
    await carol.watch([("subscription.latency", private.pk), ("subscription.latency", shared.pk)])
    refused = await carol.until(lambda m: m.get("type") == "error", what="the refusal")
    assert refused == {"type": "error", "id": "c0", "field": "watch[0].object",
                       "message": f"no subscription {private.pk} that you may see"}
    answer = await carol.until(lambda m: m.get("type") == "data", what="the chart carol may see")
    assert answer["id"] == "c1"
    assert pollers.hub().pollers.keys() == {charts.CHARTS["subscription.latency"].query(shared, "15m").key}
    await carol.close()


async def test_mesh_wide_lists_hold_only_the_subscriptions_each_viewer_may_see(
        settings, mesh_prefix, personas, subscriptions, close_thread_connections, hub_cleanup):
    settings.PROMETHEUS_URL = ""  # the answer below stays the last one there is
    private, shared = subscriptions
    lag = charts.CHARTS["mesh.largest_lag"].query(None, "15m")
    answer = {"key": lag.key, "kind": "top", "range": "15m", "start": 0, "end": 900, "step": 5, "fetched_at": 900.0,
              "error": None, "hint": None, "error_since": None, "series": [
                  {"labels": {"subscription": f"sub-{private.pk}"}, "points": [[900, 50.0]],
                   "name": "billing ← orders.created"},
                  {"labels": {"subscription": f"sub-{shared.pk}"}, "points": [[900, 7.0]],
                   "name": "shipping ← orders.created"},
                  {"labels": {"subscription": "sub-999"}, "points": [[900, 3.0]]}]}
    await pollers.hub().redis.set(redis_keys.keys().chart_last(lag.key), json.dumps(answer))
    seen = {}
    for name in ("carol", "alice", "sam"):
        viewer = await Viewer.of(personas[name])
        await viewer.watch([("mesh.largest_lag", None)])
        message = await viewer.until(lambda m: m.get("type") == "data", what=f"{name}'s list")
        seen[name] = [s["labels"]["subscription"] for s in message["series"]]
        await viewer.close()
    assert seen["carol"] == [f"sub-{shared.pk}"]
    assert seen["alice"] == [f"sub-{private.pk}", f"sub-{shared.pk}"]
    assert seen["sam"] == [f"sub-{private.pk}", f"sub-{shared.pk}", "sub-999"]  # staff see all


async def test_a_viewer_whose_session_ended_is_closed_at_the_next_answer(settings, mesh_prefix, personas,
                                                                          monkeypatch, close_thread_connections,
                                                                          hub_cleanup):
    settings.PROMETHEUS_URL = ""
    monkeypatch.setattr(chart_consumer, "RECHECK_SECONDS", 0)
    client = Client()
    await sync_to_async(client.force_login)(personas["bob"])
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    viewer = Viewer(cookie.encode())
    assert (await viewer.socket.connect(5))[0]
    await viewer.watch([("mesh.events", None)])
    await viewer.until(lambda m: m.get("type") == "data", what="a first answer")
    await sync_to_async(client.logout)()
    key = charts.CHARTS["mesh.events"].query(None, "15m").key
    await get_channel_layer().group_send(pollers.group_name(key), {"type": "chart.answer", "key": key, "answer": {}})
    closed = await viewer.socket.receive_output(5)
    while closed["type"] != "websocket.close":
        closed = await viewer.socket.receive_output(5)
    assert closed["code"] == chart_consumer.NOT_SIGNED_IN
    assert pollers.hub().pollers == {}


async def test_anonymous_visitors_are_refused_and_bad_messages_answered_by_field(
        settings, mesh_prefix, personas, close_thread_connections, hub_cleanup):
    settings.PROMETHEUS_URL = ""
    anonymous = Viewer(None)
    connected, code = await anonymous.socket.connect(5)
    assert not connected and code == chart_consumer.NOT_SIGNED_IN
    viewer = await Viewer.of(personas["carol"])
    for message, field, text in [
        ("not json", "message", "a message is a JSON object"),
        ({"watch": [], "range": "2y"}, "range", "range must be one of 15m, 1h, 6h, 24h, 7d; not '2y'"),
        ({"watch": "all"}, "watch", "watch must be a list"),
        ({"watch": [{"id": "a", "chart": "nope", "object": 1}]}, "watch[0].chart", "no chart named 'nope'"),
        ({"watch": [{"id": "a", "chart": "topic.published", "object": "1"}]}, "watch[0].object",
         "chart topic.published needs the id of a topic"),
        ({"watch": [{"id": "a", "chart": "mesh.events", "object": 3}]}, "watch[0].object", "object must be null"),
        ({"watch": [{"id": "a b", "chart": "mesh.events", "object": None}]}, "watch[0].id", "id must be"),
        ({"watch": [{"id": f"c{n}", "chart": "mesh.events", "object": None} for n in range(25)]}, "watch",
         "at most 24 charts"),
    ]:
        if isinstance(message, str):
            await viewer.socket.send_to(text_data=message)
        else:
            await viewer.socket.send_json_to(message)
        error = await viewer.until(lambda m: m.get("type") == "error", what=f"the error about {field}")
        assert error["field"] == field and text in error["message"], error
    await viewer.watch([("topic.published", 424242)])
    error = await viewer.until(lambda m: m.get("type") == "error", what="the unknown topic")
    assert error["message"] == "no topic 424242 that you may see"
    await viewer.close()
