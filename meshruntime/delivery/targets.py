"""Where a subscription's events go: a webhook (http, https) or an MQTT topic (``mqtt://``).

A subscription's ``url`` names its target; :class:`Targets` has the webhook client's surface
(``post``, ``send``, ``start``, ``close``) and hands each attempt to the transport its scheme
names, so the worker makes attempts the same way whatever the target.

``mqtt://<store>/<mqtt topic>`` publishes to the topic, as named in the broker of the catalog's
MQTT store ``<store>`` (its connection in the runtime's settings, as for any store), with QoS 1:
the broker's acknowledgement is the subscriber's 2xx. MQTT 3.1.1 carries no headers, so such a
subscription is delivered in structured mode (the configuration checks it): the message is the
CloudEvent's JSON. A broker that cannot be reached is retried as a webhook that cannot be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import unquote

from meshruntime.store import StoreError
from meshruntime.store.storeset import StoreSet

from .retry import Verdict
from .webhook import AttemptResult, WebhookClient

__all__ = ["MQTT_SCHEME", "Targets", "mqtt_target"]

MQTT_SCHEME = "mqtt://"


def mqtt_target(url: str) -> tuple[str, str]:
    """``mqtt://<store>/<topic levels>`` as (store, MQTT topic)."""
    store, _, topic = url[len(MQTT_SCHEME):].partition("/")
    return store, unquote(topic)


class Targets:
    def __init__(self, webhooks: WebhookClient, stores: StoreSet) -> None:
        self.webhooks = webhooks
        self.stores = stores
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        await self.webhooks.start()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.webhooks.close()

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, secret: str,
                   timeout_s: float) -> AttemptResult:
        if url.startswith(MQTT_SCHEME):
            return await self._publish(url, body, timeout_s)
        return await self.webhooks.post(url, headers, body, secret=secret, timeout_s=timeout_s)

    def send(self, url: str, headers: dict[str, str], body: bytes, *, secret: str, timeout_s: float,
             done: Callable[[AttemptResult], None]) -> None:
        if not url.startswith(MQTT_SCHEME):
            self.webhooks.send(url, headers, body, secret=secret, timeout_s=timeout_s, done=done)
            return
        task = asyncio.get_running_loop().create_task(self._publish(url, body, timeout_s))
        self._tasks.add(task)
        task.add_done_callback(lambda t: (self._tasks.discard(t), done(t.result())))

    async def _publish(self, url: str, body: bytes, timeout_s: float) -> AttemptResult:
        started = time.perf_counter()
        store_name, topic = mqtt_target(url)
        engine = self.stores.stores.get(store_name)
        if engine is None or not hasattr(engine, "publish"):
            why = self.stores.missing.get(store_name, f"{store_name!r} is not an MQTT store of the configuration")
            return AttemptResult(Verdict.RETRY, None, time.perf_counter() - started, f"MQTT target: {why}")
        try:
            async with asyncio.timeout(timeout_s):
                await engine.publish(topic, body)
        except TimeoutError:
            return AttemptResult(Verdict.RETRY, None, time.perf_counter() - started,
                                 f"timeout after {round(timeout_s * 1000)} ms (MQTT broker {store_name})")
        except ValueError as error:
            return AttemptResult(Verdict.REJECTED, None, time.perf_counter() - started, f"invalid MQTT target: {error}")
        except StoreError as error:
            return AttemptResult(Verdict.RETRY, None, time.perf_counter() - started, str(error)[:300])
        return AttemptResult(Verdict.DELIVERED, 200, time.perf_counter() - started)
