"""Heartbeats: each runtime tells the portal, every few seconds, that it lives and what it runs.

One entry per beat in the ``<prefix>runtimes`` stream (MAXLEN ~10000), with the fields of
docs/meshconfig.md. The portal reads the stream; a runtime missing for a while is shown as down,
and one whose ``config_version`` lags or whose ``error`` is set is shown as such.

Timestamps (``started_at``, ``sent_at``) are RFC 3339 in UTC with milliseconds and a ``Z``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import redis
import redis.asyncio

from meshruntime.background import COMMAND_TIMEOUT, async_redis_client, cancel_and_wait
from meshruntime.identity import SOFTWARE_VERSION, default_runtime_id
from meshruntime.keys import DEFAULT_PREFIX, KeySpace

if TYPE_CHECKING:
    from meshruntime.config_watcher import ConfigWatcher

__all__ = ["Heartbeater"]

log = logging.getLogger(__name__)

STREAM_MAXLEN = 10_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Heartbeater:
    """Sends a heartbeat every ``interval`` seconds until stopped; Redis outages are waited out.

    ``application`` is None (or empty) for a gateway. ``counters`` returns the runtime's totals
    (a JSON object); ``watcher`` supplies the applied config version and checksum and the last
    configuration error. ``journey_sample_rate`` and ``journey_ttl_seconds`` are the runtime's
    journey settings (``--journey-sample-rate``, ``--journey-ttl``): they are options of each
    runtime, not of the configuration document, so the heartbeat is the only place the portal
    learns them (its journey page says why an event has no journey with them).
    ``metrics_url`` gives the URL Prometheus scrapes this runtime at (empty until the runtime
    listens), which the portal lists for Prometheus's service discovery. ``held`` gives the
    subscriptions this runtime delivers that the access policy holds, and why (the ``held``
    field: ``{"sub-7": "subscribe denied by rule rule-3 (deny orders.*)"}``).
    ``max_config_bytes`` is the runtime's ``--max-config-bytes``: the portal refuses to announce a
    document longer than the smallest limit it hears of, which every such runtime would refuse.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        runtime_id: str | None = None,
        application: str | None = None,
        watcher: ConfigWatcher | None = None,
        counters: Callable[[], Mapping[str, Any]] | None = None,
        stores: Callable[[], Mapping[str, Any]] | None = None,
        interval: float = 2.0,
        journey_sample_rate: float | None = None,
        journey_ttl_seconds: int | None = None,
        metrics_url: Callable[[], str] | None = None,
        held: Callable[[], Mapping[str, str]] | None = None,
        max_config_bytes: int | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.stream = KeySpace(prefix).runtimes
        self.runtime_id = runtime_id or default_runtime_id()
        self.application = application or ""
        self.watcher = watcher
        self.counters = counters
        self.stores = stores  # per catalog store: kind, connection, state (reachable/unreachable/missing)
        self.interval = interval
        self.journey_sample_rate = journey_sample_rate
        self.journey_ttl_seconds = journey_ttl_seconds
        self.metrics_url = metrics_url
        self.held = held  # subscription id -> why the access policy holds its delivery
        self.max_config_bytes = max_config_bytes
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.version = SOFTWARE_VERSION
        self.started_at = _now()
        self._redis: redis.asyncio.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._wake = asyncio.Event()

    @property
    def redis_reachable(self) -> bool:
        """False from a failed beat until the next one that reaches Redis."""
        return not self._failing

    def fields(self) -> dict[str, str]:
        """One heartbeat's fields (stream values are strings; empty means none)."""
        error = ""
        watcher = self.watcher
        if watcher is not None and watcher.last_error:
            error = watcher.last_error
        counters: Mapping[str, Any] = {}
        if self.counters is not None:
            try:
                counters = self.counters()
            except Exception as exc:
                # A broken counter must not make a healthy runtime look dead: beat without
                # counters, and say why where the portal shows errors.
                log.exception("heartbeat counters failed")
                error = error or f"counters unavailable: {exc!r}"
        version = None if watcher is None else watcher.version
        checksum = None if watcher is None else watcher.checksum
        return {
            "runtime_id": self.runtime_id,
            "application": self.application,
            "host": self.host,
            "pid": str(self.pid),
            "software_version": self.version,
            "config_version": "" if version is None else str(version),
            "config_checksum": checksum or "",
            "error": error,
            "counters": orjson.dumps(counters).decode(),
            "metrics_url": self.metrics_url() if self.metrics_url is not None else "",
            "stores": orjson.dumps(self.stores() if self.stores is not None else {}).decode(),
            "held": orjson.dumps(self.held() if self.held is not None else {}).decode(),
            "started_at": self.started_at,
            "sent_at": _now(),
            "journey_sample_rate": "" if self.journey_sample_rate is None else repr(float(self.journey_sample_rate)),
            "journey_ttl_seconds": "" if self.journey_ttl_seconds is None else str(int(self.journey_ttl_seconds)),
            "max_config_bytes": "" if self.max_config_bytes is None else str(int(self.max_config_bytes)),
        }

    def _client(self) -> redis.asyncio.Redis:
        if self._redis is None:
            self._redis = async_redis_client(self.redis_url)
        return self._redis

    async def beat(self) -> str:
        """Send one heartbeat now; return its stream entry id. Raises Redis errors."""
        async with asyncio.timeout(COMMAND_TIMEOUT):
            entry = await self._client().xadd(self.stream, self.fields(), maxlen=STREAM_MAXLEN, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def start(self) -> None:
        """Start beating in the background (the first beat goes out at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heartbeat")

    def beat_soon(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval (something the
        portal shows changed, such as the metrics URL once the runtime listens)."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
                if self._failing:
                    self._failing = False
                    log.info("heartbeats reach Redis again")
            except (redis.RedisError, OSError) as error:
                if not self._failing:  # once per outage, not every two seconds
                    self._failing = True
                    log.warning("heartbeat not sent (%s); will keep trying every %ss", error, self.interval)
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
