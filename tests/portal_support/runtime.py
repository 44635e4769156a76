"""A real mesh runtime beside a synchronous portal test: the portal publishes, the runtime follows.

``mesh_runtime`` starts, on an asyncio loop in a thread, a gateway runtime that follows the
configuration the portal pushes to Redis (its own ConfigWatcher, as in production), delivers
subscriptions and records journeys, and webhook receivers (``meshruntime.demo.receiver``) that a
test points subscriptions at. Every wait is for a condition, with a bound.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from django.db import connections

from meshruntime.app import Runtime, Settings
from meshruntime.demo.receiver import Receiver
from rollout import push
from tests.portal_support.waiting import Loop, wait_for


def push_now() -> str:
    """``rollout.push.push()`` in a thread of its own: a browser test's thread runs Playwright's
    event loop, in which the push's live broadcast (``async_to_sync``) may not run."""

    def run() -> str:
        try:
            return push.push().outcome
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(60)


@dataclass
class MeshRuntime:
    loop: Loop
    runtime: Runtime | None = None
    receivers: list[Receiver] = field(default_factory=list)

    def receiver(self, secret: str | None = None, respond=None) -> Receiver:
        """A started webhook receiver (``receiver.url``); ``respond`` may refuse on purpose."""
        receiver = self.loop.run(Receiver(secret=secret, respond=respond).start())
        self.receivers.append(receiver)
        return receiver

    def start(self, redis_url: str, prefix: str, tmp_path, **settings) -> Runtime:
        """A gateway runtime following the pushed configuration; returns once one is applied."""
        self.runtime = Runtime(Settings(
            store_url=redis_url, config_redis_url=redis_url, prefix=prefix, runtime_id="rt-e2e",
            config_cache=tmp_path / "rt-e2e.json", config_poll_interval=0.2, heartbeat_interval=0.5, **settings))
        self.loop.run(self.runtime.start())
        wait_for(lambda: self.runtime.state is not None, 30, "the runtime to apply the pushed configuration")
        return self.runtime

    def reconciled(self) -> None:
        """Wait until the delivery engine runs the applied configuration's subscriptions."""
        self.loop.run(self.runtime.delivery.reconciled())

    def stop(self) -> None:
        if self.runtime is not None:
            self.loop.run(self.runtime.stop())
        for receiver in self.receivers:
            self.loop.run(receiver.stop())


@pytest.fixture
def mesh_runtime():
    loop = Loop()
    mesh = MeshRuntime(loop)
    yield mesh
    try:
        mesh.stop()
    finally:
        loop.close()
