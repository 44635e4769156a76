"""Fixtures of the live views' tests: the personas, a small mesh in the database, a real runtime
configured from it (compiled as a push would), signed-in websockets against the real ASGI app
and channel layer, and the real Redis under this test's key prefix."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from governance.models import AccessRule, Application
from meshadmin.asgi import application as asgi_application
from meshruntime.app import Runtime, Settings
from meshruntime.config import seal
from rollout.compiler import compile_mesh_config
from subscriptions.models import Subscription
from tests.portal_support import prometheus as prometheus_support
from tests.portal_support.factories import make_app_with_key
from tests.portal_support.live_portal import shared_database  # noqa: F401 - a fixture
from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams
from tests.portal_support.runtime import mesh_runtime  # noqa: F401 - a real runtime beside the portal
from tests.portal_support.waiting import until
from topics.models import Topic
from tracing.hub import close_hub

ORDER_SCHEMA = {"type": "object", "required": ["order_id"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}}}


@dataclass
class LiveMesh:
    """Payments owns orders.created and orders.failed and the application checkout; Logistics owns
    shipping. checkout may publish orders.*, except orders.failed (a deny rule)."""

    topics: dict[str, Topic]
    apps: dict[str, Application]
    keys: dict[str, str]  # plain keys
    deny: AccessRule
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def document(self, version: int = 1) -> dict[str, Any]:
        return seal(compile_mesh_config(), version)


@pytest.fixture
def mesh_prefix(settings, key_prefix, redis_client):
    """This test's key prefix for the portal (the runtime gets the same); cleaned up after."""
    settings.MESH_KEY_PREFIX = key_prefix
    return key_prefix


@pytest.fixture
def live_mesh(mesh_prefix, payments, logistics, store) -> LiveMesh:
    topics = {name: Topic.objects.create(name=name, team=payments, store=store, data_schema=ORDER_SCHEMA)
              for name in ("orders.created", "orders.failed")}
    checkout = make_app_with_key(payments, "checkout", may_publish=["orders.*"], may_not_publish=["orders.failed"],
                                 description="test")
    shipping = make_app_with_key(logistics, "shipping", description="test")
    [deny] = checkout.deny_rules
    return LiveMesh(topics, {"checkout": checkout.application, "shipping": shipping.application},
                    {"checkout": checkout.plain_key, "shipping": shipping.plain_key}, deny)


@dataclass
class LiveRuntime:
    runtime: Runtime
    client: aiohttp.ClientSession
    mesh: LiveMesh

    async def publish(self, topic: str, events: list[dict[str, Any]] | dict[str, Any], app: str = "checkout") -> int:
        batch = isinstance(events, list)
        response = await self.client.post(
            f"/v1/topics/{topic}/events", data=orjson.dumps(events),
            headers={"Authorization": f"Bearer {self.mesh.keys[app]}",
                     "Content-Type": "application/cloudevents-batch+json" if batch else "application/cloudevents+json"})
        await response.read()
        return response.status

    async def watched(self, topic: str) -> None:
        """Wait until the runtime taps ``topic`` (it reads the watch keys every 0.1 s here)."""
        await until(lambda: topic in self.runtime.tap.watched, f"the runtime to tap {topic}")

    async def refusals_watched(self, *, topic: str | None = None, application: str | None = None,
                               everything: bool = False) -> None:
        """Wait until the runtime taps the refusals of each scope named."""
        tap = self.runtime.tap

        def watched() -> bool:
            return ((not everything or tap.refusals_all) and (topic is None or topic in tap.refusal_topics)
                    and (application is None or application in tap.refusal_applications))

        await until(watched, "the runtime to tap refusals")


@pytest.fixture
async def live_runtime(live_mesh, redis_url, mesh_prefix) -> AsyncIterator[LiveRuntime]:
    """A gateway runtime in this test's loop, configured from the database, on the real Redis."""
    doc = await database_sync_to_async(live_mesh.document)()
    runtime = Runtime(Settings(store_url=redis_url, prefix=mesh_prefix, runtime_id="tracing-test", tap_interval=0.1))
    runtime.apply_config(doc)
    await runtime.start()
    server = runtime.make_server()
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://{host}:{port}") as client:
            yield LiveRuntime(runtime, client, live_mesh)
    finally:
        await server.shutdown()
        await runtime.stop()
        await close_hub()
        await database_sync_to_async(connections.close_all)()


def order(i: int, **overrides: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"evt-{i}", "source": "/checkout", "type": "com.example.order.created",
            "subject": f"o-{i}", "datacontenttype": "application/json", "customer": f"c-{i}",
            "data": {"order_id": f"o-{i}", "amount": i}, **overrides}


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


class Socket:
    """A websocket to the real ASGI application, signed in as a user (or nobody)."""

    def __init__(self, path: str, session: str | None = None) -> None:
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        if session is not None:
            headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session}".encode()))
        # asgiref's communicator, as channels.testing's WebsocketCommunicator (which needs daphne)
        self.communicator = ApplicationCommunicator(asgi_application, {
            "type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers, "subprotocols": [], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)})
        self.session = session
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def open(self) -> Socket:
        await self.communicator.send_input({"type": "websocket.connect"})
        answer = await self.communicator.receive_output(10)
        assert answer["type"] == "websocket.accept", answer
        return self

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message (a close is recorded and raised as ``Closed``)."""
        output = await self.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            self.close_code = output.get("code")
            raise Closed(self.close_code)
        message = orjson.loads(output["text"])
        self.received.append(message)
        return message

    async def expect(self, kind: str, timeout: float = 10.0, where: Callable[[dict], bool] = lambda m: True) -> dict:
        """The next message of type ``kind`` (that satisfies ``where``), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {kind!r} message within {timeout} s; got {[m['type'] for m in self.received[-10:]]}")
            message = await self.next(left)
            if message["type"] == kind and where(message):
                return message

    async def closed(self, timeout: float = 10.0) -> int:
        """Wait for the server to close the socket; its code."""
        with contextlib.suppress(Closed):
            while True:
                await self.next(timeout)
        return self.close_code

    async def send(self, message: Any = None, *, binary: bytes | None = None) -> None:
        if binary is not None:
            await self.communicator.send_input({"type": "websocket.receive", "bytes": binary})
            return
        text = message if isinstance(message, str) else orjson.dumps(message).decode()
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may have closed it already
            await self.communicator.send_input({"type": "websocket.disconnect", "code": 1000})
            await self.communicator.wait(5)

    def events(self) -> list[dict[str, Any]]:
        return [e for m in self.received if m["type"] == "events" for e in m["events"]]


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


@pytest.fixture
async def sockets():
    """``await sockets(path, user)`` opens a signed-in socket; all are closed at the end."""
    opened: list[Socket] = []

    async def open_socket(path: str, user=None) -> Socket:
        session = await database_sync_to_async(session_cookie)(user) if user is not None else None
        socket = Socket(path, session)
        opened.append(socket)
        return await socket.open()

    yield open_socket
    for socket in opened:
        await socket.close()
    # the consumers' queries ran in Channels' database thread: close its connections, or the test
    # database cannot be dropped at the end of the run
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Debian's prometheus, installed when missing and we may; CI must have it (make test installs it)."""
    found = prometheus_support.binary()
    if found is None:
        reason = ("Debian's prometheus is not installed and could not be (not root, no sudo): "
                  "run ./scripts/system-deps as root")
        if prometheus_support.ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _starter(binary: str, folder):
    servers = []

    def start(config: str | None, name: str = "prometheus") -> prometheus_support.PrometheusServer:
        """Started with ``config``; None: not yet (call ``.start(config)``)."""
        server = prometheus_support.PrometheusServer(folder / name, binary)
        servers.append(server)
        return server if config is None else server.start(config)

    return start, servers


@pytest.fixture
def start_prometheus(prometheus_binary, tmp_path):
    """``start_prometheus(config_text)``: a running Prometheus on a free port, stopped after the test."""
    start, servers = _starter(prometheus_binary, tmp_path)
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def start_module_prometheus(prometheus_binary, tmp_path_factory):
    """The same, for a Prometheus that the tests of one module share."""
    start, servers = _starter(prometheus_binary, tmp_path_factory.mktemp("prometheus"))
    yield start
    for server in servers:
        server.stop()
