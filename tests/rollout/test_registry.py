"""The runtime registry: heartbeats from the real Redis stream into rows, states, and the live
websocket (through the whole ASGI stack: session cookie, origin check, router, consumer)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from rollout import push
from rollout.models import Runtime
from rollout.registry import GROUP, HeartbeatIngester, stream_key
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db


def beat(client, runtime_id="billing-1", **fields) -> str:
    now = timezone.now().isoformat().replace("+00:00", "Z")
    entry = {"runtime_id": runtime_id, "application": "billing", "host": "node-1", "pid": "4242",
             "software_version": "0.1.0", "config_version": "", "config_checksum": "", "error": "",
             "counters": json.dumps({"accepted": 3}), "started_at": now, "sent_at": now, **fields}
    return client.xadd(stream_key(), entry).decode()


@pytest.fixture
def ingester(mesh_redis):
    ingester = HeartbeatIngester(mesh_redis, consumer="test", block_ms=10)
    ingester.ensure_group()
    return ingester


def test_heartbeats_become_one_row_per_runtime_with_the_newest_values(ingester, mesh_redis):
    beat(mesh_redis, "billing-1", config_version="3")
    beat(mesh_redis, "shipping-1", application="shipping", host="node-2")
    beat(mesh_redis, "billing-1", config_version="4", config_checksum="a" * 64, error="refused version 5")
    stored = ingester.step()
    assert sorted(r.runtime_id for r in stored) == ["billing-1", "shipping-1"]
    billing = Runtime.objects.get(runtime_id="billing-1")
    assert (billing.application, billing.host, billing.pid, billing.config_version, billing.config_checksum) == \
        ("billing", "node-1", 4242, 4, "a" * 64)
    assert billing.last_error == "refused version 5" and billing.counters == {"accepted": 3}
    assert billing.started_at is not None and billing.state == Runtime.HEALTHY
    assert mesh_redis.xpending(stream_key(), GROUP)["pending"] == 0  # all acknowledged


def test_the_journey_settings_a_runtime_reports_are_kept_and_nonsense_is_not(ingester, mesh_redis):
    beat(mesh_redis, "sampled-1", journey_sample_rate="0.1", journey_ttl_seconds="3600")
    beat(mesh_redis, "silent-1")  # an older runtime: does not report them
    beat(mesh_redis, "odd-1", journey_sample_rate="7", journey_ttl_seconds="-1")
    ingester.step()
    reported = {r.runtime_id: (r.journey_sample_rate, r.journey_ttl_seconds) for r in Runtime.objects.all()}
    assert reported == {"sampled-1": (0.1, 3600), "silent-1": (None, None), "odd-1": (None, None)}


def test_the_size_limit_a_runtime_reports_is_kept_and_nonsense_is_not(ingester, mesh_redis):
    beat(mesh_redis, "limited-1", max_config_bytes="65536")
    beat(mesh_redis, "silent-1")  # an older runtime: does not report it
    beat(mesh_redis, "zero-1", max_config_bytes="0")
    beat(mesh_redis, "huge-1", max_config_bytes=str(1 << 64))
    ingester.step()
    reported = {r.runtime_id: r.max_config_bytes for r in Runtime.objects.all()}
    assert reported == {"limited-1": 65536, "silent-1": None, "zero-1": None, "huge-1": None}


def test_a_later_heartbeat_updates_the_row_and_keeps_first_seen(ingester, mesh_redis):
    beat(mesh_redis, config_version="1")
    ingester.step()
    first = Runtime.objects.get()
    beat(mesh_redis, config_version="2", error="")
    ingester.step()
    again = Runtime.objects.get()
    assert again.config_version == 2 and again.first_seen == first.first_seen and again.last_seen >= first.last_seen


def test_a_beat_without_a_runtime_id_or_with_garbage_is_skipped_or_tolerated(ingester, mesh_redis):
    mesh_redis.xadd(stream_key(), {"application": "anonymous"})
    beat(mesh_redis, "odd-1", pid="not-a-number", counters="{broken", sent_at="yesterday", config_version="x")
    ingester.step()
    odd = Runtime.objects.get()
    assert (odd.runtime_id, odd.pid, odd.counters, odd.config_version) == ("odd-1", None, {}, None)
    assert mesh_redis.xpending(stream_key(), GROUP)["pending"] == 0


def test_the_metrics_url_is_kept_when_it_is_an_http_url_and_dropped_otherwise(ingester, mesh_redis):
    beat(mesh_redis, "good-1", metrics_url="http://10.0.0.7:8700/metrics")
    beat(mesh_redis, "none-1")
    for n, bad in enumerate(["file:///etc/passwd", "http:///metrics", "http://h:port/metrics", "not a url",
                             "http://h/" + "x" * 500]):
        beat(mesh_redis, f"bad-{n}", metrics_url=bad)
    ingester.step()
    urls = dict(Runtime.objects.values_list("runtime_id", "metrics_url"))
    assert urls.pop("good-1") == "http://10.0.0.7:8700/metrics"
    assert set(urls.values()) == {""}, urls


def test_a_clock_in_the_future_does_not_keep_a_runtime_healthy(ingester, mesh_redis):
    future = (timezone.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    beat(mesh_redis, sent_at=future)
    ingester.step()
    assert Runtime.objects.get().last_seen <= timezone.now()


def test_the_sweep_forgets_runtimes_silent_for_longer_than_the_setting_until_they_beat_again(
        ingester, mesh_redis, settings):
    settings.MESH_RUNTIME_GONE_SECONDS, settings.MESH_RUNTIME_FORGET_SECONDS = 600, 86_400
    now = timezone.now()
    for runtime_id, silent in [("old", timedelta(days=2)), ("just-gone", timedelta(hours=1)), ("live", timedelta())]:
        Runtime.objects.create(runtime_id=runtime_id, last_seen=now - silent)
    ingester.sweep()
    assert sorted(Runtime.objects.values_list("runtime_id", flat=True)) == ["just-gone", "live"]
    beat(mesh_redis, "old")  # back after all: registered again, as new
    ingester.step()
    assert Runtime.objects.get(runtime_id="old").state == Runtime.HEALTHY


def test_states_follow_the_silence(settings):
    settings.MESH_RUNTIME_STALE_SECONDS, settings.MESH_RUNTIME_GONE_SECONDS = 30, 600
    now = timezone.now()
    runtime = Runtime(runtime_id="r", last_seen=now - timedelta(seconds=29))
    assert runtime.state_at(now) == Runtime.HEALTHY
    runtime.last_seen = now - timedelta(seconds=30)
    assert runtime.state_at(now) == Runtime.STALE
    runtime.last_seen = now - timedelta(seconds=600)
    assert runtime.state_at(now) == Runtime.GONE


def test_convergence_is_in_sync_behind_or_error():
    runtime = Runtime(runtime_id="r", config_version=4)
    assert runtime.sync_with(4) == Runtime.IN_SYNC
    assert runtime.sync_with(5) == Runtime.BEHIND
    assert runtime.sync_with(None) == Runtime.UNKNOWN
    assert Runtime(runtime_id="r").sync_with(1) == Runtime.BEHIND
    assert Runtime(runtime_id="r", config_version=5, last_error="refused version 6").sync_with(6) == Runtime.ERROR


def test_a_restarted_ingester_takes_back_what_it_had_not_acknowledged(mesh_redis):
    crashed = HeartbeatIngester(mesh_redis, consumer="node-a", block_ms=10)
    crashed.ensure_group()
    beat(mesh_redis, "billing-1")
    crashed._backlog = False
    assert len(crashed.read()) == 1  # read, then "crashed" before storing and acknowledging
    assert not Runtime.objects.exists()
    HeartbeatIngester(mesh_redis, consumer="node-a", block_ms=10).step()
    assert Runtime.objects.filter(runtime_id="billing-1").exists()
    assert mesh_redis.xpending(stream_key(), GROUP)["pending"] == 0


def test_beats_sent_before_the_first_ingester_started_are_read(mesh_redis):
    beat(mesh_redis, "early-1")
    ingester = HeartbeatIngester(mesh_redis, consumer="late", block_ms=10)
    ingester.ensure_group()
    ingester.step()
    assert Runtime.objects.filter(runtime_id="early-1").exists()


@pytest.mark.django_db(transaction=True)  # run() manages its connection as a long-lived process does
def test_the_ingester_recreates_its_group_when_redis_lost_the_stream(ingester, mesh_redis):
    mesh_redis.delete(stream_key())
    ingester.stopped = False
    steps = iter(range(2))

    original = ingester.step

    def step_then_stop():
        if next(steps, None) == 1:
            ingester.stopped = True
        return original()

    ingester.step = step_then_stop
    ingester.run()  # NOGROUP on the first read; the group comes back; the second read works
    assert mesh_redis.exists(stream_key())


# The websocket


@pytest.fixture
async def close_thread_connections():
    """The async tests reach the database from a worker thread; close its connection after,
    or PostgreSQL refuses to drop the test database."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


class Socket:
    """A websocket client of the project's ASGI application (session cookie, origin check,
    router, consumer: the whole stack)."""

    def __init__(self, user=None) -> None:
        from meshadmin.asgi import application

        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
        if user is not None:
            client = Client()
            client.force_login(user)
            name = django_settings.SESSION_COOKIE_NAME
            cookie = f"{name}={client.cookies[name].value}"
            headers.append((b"cookie", cookie.encode()))
        self.app = ApplicationCommunicator(application, {
            "type": "websocket", "path": "/ws/runtimes/", "headers": headers, "subprotocols": [],
            "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("localhost", 80),
        })

    async def connect(self) -> dict:
        await self.app.send_input({"type": "websocket.connect"})
        return await self.app.receive_output(5)

    async def receive_json(self) -> dict:
        message = await self.app.receive_output(5)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def close(self) -> None:
        await self.app.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.app.wait(1)


@pytest.mark.django_db(transaction=True)
async def test_the_socket_refuses_anonymous_visitors(mesh_redis, close_thread_connections):
    socket = Socket()
    reply = await socket.connect()
    assert reply == {"type": "websocket.close", "code": 4403}


@pytest.mark.django_db(transaction=True)
async def test_the_socket_sends_the_registry_then_every_change_as_the_api_shows_it(mesh_redis,
                                                                                   close_thread_connections):
    from django.contrib.auth.models import User

    carol = await sync_to_async(User.objects.create_user)("carol")  # no team at all: still may look
    await sync_to_async(build_mesh)()
    await sync_to_async(push.push)()
    socket = await sync_to_async(Socket)(carol)
    assert (await socket.connect())["type"] == "websocket.accept"
    snapshot = await socket.receive_json()
    assert snapshot["type"] == "snapshot" and snapshot["runtimes"] == [] and snapshot["latest"]["version"] == 1

    ingester = HeartbeatIngester(mesh_redis, consumer="test", block_ms=10)
    await sync_to_async(ingester.ensure_group)()
    beat(mesh_redis, "billing-1", config_version="1", config_checksum="b" * 64)
    await sync_to_async(ingester.step)()
    update = await socket.receive_json()
    assert update["type"] == "runtimes" and update["latest"]["version"] == 1
    [runtime] = update["runtimes"]
    assert (runtime["runtime_id"], runtime["state"], runtime["sync"]) == ("billing-1", "healthy", "in_sync")

    api = await sync_to_async(lambda: client_for(carol).get(f"/api/v1/runtimes/{runtime['id']}/").json())()
    assert {k: v for k, v in api.items() if k != "url"} == runtime

    # A new version: every runtime's convergence changes, and the page hears it at once.
    from governance.models import AccessRule

    await sync_to_async(lambda: AccessRule.objects.update(description="new"))()
    await sync_to_async(push.push)()
    version = await socket.receive_json()
    assert version["type"] == "version" and version["latest"]["version"] == 2
    assert version["runtimes"][0]["sync"] == "behind"

    # Silent for longer than MESH_RUNTIME_FORGET_SECONDS: deleted, and the page hears it.
    await sync_to_async(lambda: Runtime.objects.update(last_seen=timezone.now() - timedelta(days=30)))()
    await sync_to_async(ingester.sweep)()
    assert await socket.receive_json() == {"type": "forget", "forgotten": ["billing-1"]}
    await socket.close()
