"""Shared pollers: one Prometheus query per distinct chart per refresh, whatever the number of viewers.

Fifty operators looking at one topic watch the same four queries. Each portal process runs one
:class:`Poller` per distinct query (``charts.Query.key``) that any of its websockets watches, and
across processes a lease in Redis (``KeySpace.chart_lease``) lets exactly one of them ask
Prometheus: the holder sends the answer to the query's Channels group, which reaches every
viewer in every process, and keeps it in Redis (``KeySpace.chart_last``) so that a viewer who
arrives later gets the last answer at once, without a query of its own. A process whose viewers
leave stops its poller and gives the lease back; if the holder dies, its lease expires after
a few refreshes and another process takes over.

Prometheus down or slow: every query has a deadline (``tracing.prometheus``), and the answer
sent is the last good data with the error and the time since when it has failed, so a chart
keeps what it had and says so. Refreshes are aligned to the wall clock (multiples of the
range's refresh), so that the processes' pollers of one query tick together.

A page that watches calls :func:`hub` ``.join(query)`` / ``.leave(key)`` and joins
:func:`group_name` ``(key)``. A page that asks now and again instead (the topology API, which its
page polls) calls :func:`shared_answer`: the same answer in Redis, the same lease, so that any
number of viewers, watching or polling, cost one query per refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from rollout import redis_keys

from . import portal_metrics, prometheus
from .charts import RANGES, TOP_CHART, Query, describe

__all__ = ["Poller", "PollerHub", "group_name", "hub", "last_answer", "shared_answer"]

log = logging.getLogger(__name__)

#: How long the last answer of a query is kept for viewers who arrive later.
LAST_ANSWER_TTL = 3600
#: How long a leaving viewer waits for its poller to stop (it stops on its flag at the latest).
STOP_SECONDS = 2.0
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def group_name(key: str) -> str:
    """The Channels group of a query's viewers (one per key prefix, so tests stay apart)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", redis_keys.prefix()) + "charts." + key


def _client() -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2.0, socket_timeout=5.0)


async def last_answer(client: redis.asyncio.Redis, key: str) -> dict[str, Any] | None:
    """The last answer to ``key`` that any process fetched, or None."""
    raw = await client.get(redis_keys.keys().chart_last(key))
    return json.loads(raw) if raw else None


@dataclass
class _Outage:
    error: str
    hint: str
    since: float


class Poller:
    """Polls one query while this process has viewers of it (see the module's docstring)."""

    def __init__(self, hub: PollerHub, query: Query) -> None:
        self.hub = hub
        self.query = query
        self.key = query.key
        self.viewers = 0
        self.token = secrets.token_hex(8)
        self.step, self.refresh, _window = RANGES[query.range].scaled()
        self.task: asyncio.Task | None = None
        self.stopped = asyncio.Event()
        self.polled = asyncio.Event()  # set after each poll this process made (tests, benchmark)
        self.polls = 0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"chart-poller-{self.key}")

    async def stop(self) -> None:
        """Stop polling and give the lease back. Bounded: the loop also ends on the ``stopped``
        flag, because a cancellation that lands inside a library call is sometimes swallowed
        there, and a viewer's disconnect must never wait for it."""
        self.stopped.set()
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            done, _pending = await asyncio.wait([task], timeout=STOP_SECONDS)
            if not done:
                log.warning("chart poller %s did not stop within %s s; left to end on its flag", self.key,
                            STOP_SECONDS)
        with contextlib.suppress(redis.RedisError, OSError):
            await self.hub.redis.eval(_RELEASE, 1, redis_keys.keys().chart_lease(self.key), self.token)

    async def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                if await self._lease():
                    await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or Redis away: log, and try again next refresh
                log.exception("chart poller %s failed", self.key)
            now = time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.refresh - now % self.refresh + 0.05)

    async def _lease(self) -> bool:
        ttl_ms = int(max(10.0, 2.5 * self.refresh) * 1000)
        return bool(await self.hub.redis.eval(_ACQUIRE, 1, redis_keys.keys().chart_lease(self.key), self.token,
                                              ttl_ms))

    async def poll(self) -> dict[str, Any]:
        """Ask Prometheus once; keep and send the answer (or the last one, with the error)."""
        answer = await self._fetch()
        keys = redis_keys.keys()
        await self.hub.redis.set(keys.chart_last(self.key), json.dumps(answer), ex=LAST_ANSWER_TTL)
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(group_name(self.key), {"type": "chart.answer", "key": self.key, "answer": answer})
        portal_metrics.CHART_UPDATES.labels("error" if answer["error"] else "ok").inc()
        self.polls += 1
        self.polled.set()
        self.polled = asyncio.Event()
        return answer

    async def _fetch(self) -> dict[str, Any]:
        query = self.query
        now = time.time()
        end = now - now % self.step
        start = end - RANGES[query.range].seconds
        try:
            if query.kind == TOP_CHART:
                series = await prometheus.query_instant(query.promql)
                series.sort(key=lambda s: -(s.points[0][1] or 0) if s.points else 0)
            else:
                series = await prometheus.query_range(query.promql, start, end, self.step)
        except prometheus.PrometheusUnavailable as error:
            return await self._failed(error, start, end)
        rows = [s.as_json() for s in series]
        if query.describe:
            names = await database_sync_to_async(describe)(
                query.describe, [s.labels.get(query.describe, "") for s in series])
            for row in rows:
                described = names.get(row["labels"].get(query.describe, ""))
                if described is not None:
                    row["name"], row["url"] = described.name, described.url
        self.hub.outages.pop(self.key, None)
        return {"key": self.key, "kind": query.kind, "range": query.range, "start": start, "end": end,
                "step": self.step, "series": rows, "fetched_at": now, "polled_at": now, "error": None, "hint": None,
                "error_since": None}

    async def _failed(self, error: prometheus.PrometheusUnavailable, start: float, end: float) -> dict[str, Any]:
        """The last good answer, marked with the error and since when it lasts."""
        previous: dict[str, Any] = {}
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            previous = await last_answer(self.hub.redis, self.key) or {}
        outage = self.hub.outages.get(self.key)
        if outage is None:  # another process may have seen the outage begin
            since = previous.get("error_since") or time.time()
            outage = self.hub.outages[self.key] = _Outage(error.message, error.hint, since)
        outage.error, outage.hint = error.message, error.hint
        return {"key": self.key, "kind": self.query.kind, "range": self.query.range,
                "start": previous.get("start", start), "end": previous.get("end", end), "step": self.step,
                "series": previous.get("series") or [], "fetched_at": previous.get("fetched_at"),
                "polled_at": time.time(), "error": outage.error, "hint": outage.hint, "error_since": outage.since}


class PollerHub:
    """The pollers of one event loop (one per portal process; one per test's loop)."""

    def __init__(self) -> None:
        self.pollers: dict[str, Poller] = {}
        self.outages: dict[str, _Outage] = {}
        self.redis = _client()
        self._lock = asyncio.Lock()

    async def join(self, query: Query) -> Poller:
        """A viewer more for ``query``: its poller starts with the first one."""
        async with self._lock:
            poller = self.pollers.get(query.key)
            if poller is None:
                poller = self.pollers[query.key] = Poller(self, query)
                poller.start()
                portal_metrics.POLLERS.set(len(self.pollers))
            poller.viewers += 1
            return poller

    async def leave(self, key: str) -> None:
        """A viewer less for ``key``: its poller stops with the last one."""
        async with self._lock:
            poller = self.pollers.get(key)
            if poller is None:
                return
            poller.viewers -= 1
            if poller.viewers > 0:
                return
            del self.pollers[key]
            portal_metrics.POLLERS.set(len(self.pollers))
        await poller.stop()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PollerHub] = weakref.WeakKeyDictionary()


def hub() -> PollerHub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = PollerHub()
    return found


async def shared_answer(query: Query) -> dict[str, Any]:
    """The answer to ``query`` for a caller that asks rather than watches (the topology API).

    The last answer any process fetched (a poller's or an earlier caller's) when it is younger
    than one refresh; otherwise the caller that takes the query's lease asks Prometheus, keeps
    the answer for everyone and gives the lease back, and a caller that loses the race gets the
    last answer. So any number of viewers polling cost one query per refresh, as watching ones
    do. Prometheus down: the last good data, with the error and since when (as a poller's).
    """
    hub = PollerHub()  # a client of this call's own: the caller's loop may be a throwaway one
    try:
        poller = Poller(hub, query)
        last = await last_answer(hub.redis, query.key)
        if last is not None and time.time() - float(last.get("polled_at") or 0) < poller.refresh:
            return last
        if last is not None and not await poller._lease():
            return last
        try:
            return await poller.poll()
        finally:
            await poller.stop()  # gives the lease back: the next caller or a poller may take it
    finally:
        await hub.redis.aclose()
