"""``/ws/charts/``: live chart data for the pages that draw charts (docs/metrics.md, "Websocket").

A signed-in viewer names the charts to watch and a time range::

    {"watch": [{"id": "c1", "chart": "topic.published", "object": 12}], "range": "15m"}

Each chart is authorised as its page is (``Model.objects.restrict(user)``: a subscription the
viewer may not see is answered with an error naming it, exactly as if it did not exist), turned
into its query (``tracing.charts``) and joined to that query's shared poller
(``tracing.pollers``); the answers come as ``{"type": "data", "id": "c1", …}``. A chart that
lists subscriptions gets only those the viewer may see. A new ``watch`` replaces the previous one
(that is how the page changes range). A bad message is answered ``{"type": "error", "field":
…, "message": …}`` and the socket stays open.

Close codes: 4401 when the viewer is not signed in, or their session has ended (logout,
password change, user deactivated): the consumer re-reads the session and re-authorises every
chart at most every ``RECHECK_SECONDS`` while answers arrive, so a viewer who lost access to a
subscription stops getting its data within that time.
"""

from __future__ import annotations

import importlib
import re
import time
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from . import portal_metrics
from .charts import CHARTS, RANGES, TOP_CHART, Watch, visible_subscription_ids
from .pollers import group_name, hub, last_answer

__all__ = ["ChartConsumer", "NOT_SIGNED_IN"]

NOT_SIGNED_IN = 4401
MAX_CHARTS = 24
RECHECK_SECONDS = 10.0
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class BadMessage(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _session_user(scope):
    """The user of the scope's session as the session store has it now (None when it ended)."""
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if not key:
        return None
    store = importlib.import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    user = get_user(SimpleNamespace(session=store))
    return user if user.is_authenticated and user.is_active else None


def _parse(content: Any) -> tuple[list[tuple[str, str, Any]], str]:
    """``[(id, chart name, object id)]`` and the range name of a ``watch`` message."""
    if not isinstance(content, dict):
        raise BadMessage("message", "a message is a JSON object with 'watch' and 'range'")
    range_name = content.get("range", "15m")
    if range_name not in RANGES:
        raise BadMessage("range", f"range must be one of {', '.join(RANGES)}; not {range_name!r}")
    entries = content.get("watch")
    if not isinstance(entries, list):
        raise BadMessage("watch", "watch must be a list of {id, chart, object}")
    if len(entries) > MAX_CHARTS:
        raise BadMessage("watch", f"at most {MAX_CHARTS} charts per socket; this message has {len(entries)}")
    parsed, seen = [], set()
    for n, entry in enumerate(entries):
        where = f"watch[{n}]"
        if not isinstance(entry, dict):
            raise BadMessage(where, "each chart is an object with id, chart and object")
        chart_id, name, obj = entry.get("id"), entry.get("chart"), entry.get("object")
        if not isinstance(chart_id, str) or not _ID.match(chart_id) or chart_id in seen:
            raise BadMessage(f"{where}.id", "id must be a unique string of 1 to 64 letters, digits or _.:-")
        seen.add(chart_id)
        chart = CHARTS.get(name) if isinstance(name, str) else None
        if chart is None:
            raise BadMessage(f"{where}.chart", f"no chart named {name!r}")
        if chart.model is None:
            if obj is not None:
                raise BadMessage(f"{where}.object", f"chart {name} is about the whole mesh: object must be null")
        elif not isinstance(obj, int) or isinstance(obj, bool) or obj < 1:
            raise BadMessage(f"{where}.object", f"chart {name} needs the id of a {chart.model._meta.verbose_name}")
        parsed.append((chart_id, name, obj))
    return parsed, range_name


def _resolve(user, entries: list[tuple[str, str, Any]], range_name: str) -> tuple[dict[str, Watch], list[dict]]:
    """The watches ``user`` may have, and an error for each chart of an object they may not see."""
    watches: dict[str, Watch] = {}
    errors = []
    subscriptions: frozenset[str] | None | bool = False  # looked up once, when a chart needs it
    for n, (chart_id, name, object_id) in enumerate(entries):
        chart = CHARTS[name]
        obj = None
        if chart.model is not None:
            obj = chart.model.objects.restrict(user).filter(pk=object_id).first()
            if obj is None:
                errors.append({"type": "error", "id": chart_id, "field": f"watch[{n}].object",
                               "message": f"no {chart.model._meta.verbose_name} {object_id} that you may see"})
                continue
        allowed = None
        if chart.private_label:
            if subscriptions is False:
                subscriptions = visible_subscription_ids(user)
            allowed = subscriptions
        watches[chart_id] = Watch(chart_id, chart, object_id, chart.query(obj, range_name), allowed)
    return watches, errors


class ChartConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope, receive, send):
        """Whatever ends the consumer — a disconnect, a send to a browser already gone, a bug —
        its pollers are left: otherwise they would poll Prometheus for nobody, for ever."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()

    async def _release(self) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            portal_metrics.WEBSOCKETS.dec()
            await self._watch({})

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=NOT_SIGNED_IN)
            return
        self.user = user
        self.watches: dict[str, Watch] = {}
        self.entries: list[tuple[str, str, Any]] = []
        self.range = "15m"
        self.checked = time.monotonic()
        await self.accept()
        portal_metrics.WEBSOCKETS.inc()
        self.counted = True

    async def disconnect(self, code) -> None:
        await self._release()

    async def receive_json(self, content, **kwargs) -> None:
        try:
            entries, range_name = _parse(content)
        except BadMessage as error:
            await self.send_json({"type": "error", "field": error.field, "message": error.message})
            return
        self.entries, self.range = entries, range_name
        watches, errors = await database_sync_to_async(_resolve)(self.user, entries, range_name)
        for error in errors:
            await self.send_json(error)
        await self._watch(watches)

    async def decode_json(self, text_data):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # answered by receive_json as a message that is not an object

    async def _watch(self, watches: dict[str, Watch]) -> None:
        """Replace the watched charts: leave the queries no longer watched, join the new ones,
        and send each new chart the last answer its query has, if any."""
        old_keys = {w.query.key for w in self.watches.values()}
        new_keys = {w.query.key for w in watches.values()}
        pollers = hub()
        for key in new_keys - old_keys:
            await self.channel_layer.group_add(group_name(key), self.channel_name)
        for watch in watches.values():
            if watch.query.key not in old_keys:
                await pollers.join(watch.query)
                old_keys.add(watch.query.key)  # a second chart of the same query joins no more
        for key in {w.query.key for w in self.watches.values()} - new_keys:
            await self.channel_layer.group_discard(group_name(key), self.channel_name)
            await pollers.leave(key)
        portal_metrics.CHART_VIEWERS.inc(len(watches) - len(self.watches))
        fresh = [w for w in watches.values() if self.watches.get(w.id) != w]
        self.watches = watches
        for watch in fresh:
            answer = await last_answer(pollers.redis, watch.query.key)
            if answer is not None:
                await self._send(watch, answer)

    async def chart_answer(self, event) -> None:
        if time.monotonic() - self.checked > RECHECK_SECONDS and not await self._recheck():
            return
        for watch in list(self.watches.values()):
            if watch.query.key == event["key"]:
                await self._send(watch, event["answer"])

    async def _recheck(self) -> bool:
        """Re-read the session and re-authorise every chart; False once the socket is closed."""
        self.checked = time.monotonic()
        user = await database_sync_to_async(_session_user)(self.scope)
        if user is None or user.pk != self.user.pk:
            await self._watch({})
            await self.close(code=NOT_SIGNED_IN)
            return False
        self.user = user
        watches, errors = await database_sync_to_async(_resolve)(user, self.entries, self.range)
        for error in errors:
            if error["id"] in self.watches:
                await self.send_json(error)
        await self._watch(watches)
        return True

    async def _send(self, watch: Watch, answer: dict) -> None:
        series = answer.get("series") or []
        label = watch.chart.private_label
        if label and watch.allowed is not None:
            series = [s for s in series if s["labels"].get(label) in watch.allowed]
        if watch.chart.kind == TOP_CHART:
            series = series[:watch.chart.limit]
        await self.send_json({"type": "data", "id": watch.id, "chart": watch.chart.name, "kind": watch.chart.kind,
                              "range": answer.get("range"), "start": answer.get("start"), "end": answer.get("end"),
                              "step": answer.get("step"), "series": series, "fetched_at": answer.get("fetched_at"),
                              "error": answer.get("error"), "hint": answer.get("hint"),
                              "error_since": answer.get("error_since")})
