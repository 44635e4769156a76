"""Websockets of the live views: a topic's tail and the refusals panels.

Every consumer decides in ``connect()``, before ``accept()``, whether the user may watch (signed
in, the topic or application visible: ``tracing.access``); a refusal accepts only to close at
once with a code the page explains, having sent nothing:

- ``4401``: not signed in, or the session ended, or the account was deactivated;
- ``4404``: no such topic or application, or not one the user may see (any longer).

Rights are checked again whenever a change may have touched them (``tracing.notify``: the
channel-layer groups of the user, the topic, the application) and every
``MESH_TAIL_RECHECK_SECONDS`` in any case; a user who may no longer see payloads gets masked
copies from then on, one who may no longer watch is closed out.

Messages from the browser are JSON objects with a ``type``; a bad one gets
``{"type": "error", "field", "message"}`` and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import import_module
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest

from governance.models import Application
from meshruntime.tapwire import TapMessage
from rollout import redis_keys

from .access import may_see_payload, visible_topics
from .hub import Stream, hub
from .links import journey_url_template
from .notify import application_group, topic_group, user_group
from .refusals import RefusalReader
from .tail import BadMessage, Viewer

log = logging.getLogger(__name__)

__all__ = ["CLOSE_NOT_FOUND", "CLOSE_SIGNED_OUT", "RefusalsConsumer", "TailConsumer"]

CLOSE_SIGNED_OUT = 4401
CLOSE_NOT_FOUND = 4404
#: Longest message a browser may send (a filter with many clauses fits easily).
MAX_MESSAGE = 16 * 1024
#: Refusals kept per channel for panels opened later.
KEEP_REFUSALS = 50


def current_user(session_key: str | None, user_id: int):
    """The user the session still signs in, if it is ``user_id`` and active; else None.

    What Django's authentication middleware would decide on the next request: the session
    exists and has not expired, its user is active and its password has not changed since.
    """
    if not session_key:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(request)
    return user if user.is_authenticated and user.pk == user_id else None


class WatchConsumer(AsyncWebsocketConsumer):
    """What the live views share: authorisation, the re-checks, JSON out, closing with a code."""

    _started = False
    _recheck_task: asyncio.Task | None = None

    # -- what subclasses say --------------------------------------------------------------------
    def authorise(self, user) -> bool:
        """Whether ``user`` may watch (synchronous, runs off the loop); keeps what it found."""
        raise NotImplementedError

    def groups_to_join(self) -> list[str]:
        return []

    async def start(self) -> None:
        """Accepted: start watching."""

    async def stop(self) -> None:
        """Closing: stop watching."""

    async def rights_changed(self) -> None:
        """Rights were checked again (and still allow watching)."""

    # -- life cycle -----------------------------------------------------------------------------
    async def connect(self) -> None:
        user = self.scope.get("user")
        session = self.scope.get("session")
        if user is None or not user.is_authenticated or session is None:
            await self._refuse(CLOSE_SIGNED_OUT, "sign in to watch")
            return
        self.user = user
        self.session_key = session.session_key
        if not await database_sync_to_async(self.authorise)(user):
            await self._refuse(CLOSE_NOT_FOUND, "not found")
            return
        self.joined = [user_group(user.pk), *self.groups_to_join()]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self._started = True
        await self.start()
        self._recheck_task = asyncio.get_running_loop().create_task(self._recheck_loop())

    async def _refuse(self, code: int, reason: str) -> None:
        # Accepted only so that the browser gets the code (a handshake refused before accept
        # reaches a page as 1006, which says nothing); nothing is sent before the close.
        await self.accept()
        await self.close(code=code, reason=reason)

    async def disconnect(self, code) -> None:
        await self._shut()

    async def _shut(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._recheck_task is not None and self._recheck_task is not asyncio.current_task():
            self._recheck_task.cancel()
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.stop()

    async def end(self, code: int, reason: str) -> None:
        """Stop watching and close with ``code``."""
        await self._shut()
        await self.close(code=code, reason=reason)

    # -- rights, again --------------------------------------------------------------------------
    async def access_changed(self, event) -> None:
        await self.recheck()

    async def _recheck_loop(self) -> None:
        while self._started:
            await asyncio.sleep(settings.MESH_TAIL_RECHECK_SECONDS)
            try:
                await self.recheck()
            except Exception:  # a database hiccup: check again next time, keep the socket
                log.exception("re-checking a viewer's rights failed")

    async def recheck(self) -> None:
        if not self._started:
            return
        user = await database_sync_to_async(current_user)(self.session_key, self.user.pk)
        if user is None:
            await self.end(CLOSE_SIGNED_OUT, "session ended")
            return
        self.user = user
        if not await database_sync_to_async(self.authorise)(user):
            await self.end(CLOSE_NOT_FOUND, "no longer visible")
            return
        await self.rights_changed()

    # -- messages -------------------------------------------------------------------------------
    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=orjson.dumps(message).decode())

    def parse(self, text_data: str | None, bytes_data: bytes | None) -> Any:
        """The browser's message as JSON; raises :class:`BadMessage`."""
        if text_data is None:
            raise BadMessage("message", "must be JSON text, not binary")
        if len(text_data) > MAX_MESSAGE:
            raise BadMessage("message", f"must be at most {MAX_MESSAGE} characters, got {len(text_data)}")
        try:
            return orjson.loads(text_data)
        except orjson.JSONDecodeError as error:
            raise BadMessage("message", f"is not valid JSON: {error}") from None


class TailConsumer(WatchConsumer):
    """``/ws/tracing/topics/<pk>/tail/``: the topic's live tap (``tracing.tail``)."""

    def authorise(self, user) -> bool:
        topic = visible_topics(user).filter(pk=self.scope["url_route"]["kwargs"]["pk"]).first()
        if topic is None:
            return False
        self.topic = topic
        self.payload = may_see_payload(user, topic)
        return True

    def groups_to_join(self) -> list[str]:
        return [topic_group(self.topic.pk)]

    async def start(self) -> None:
        keys = redis_keys.keys()
        self.stream = Stream(keys.tap(self.topic.name), keys.tap_watch(self.topic.name))
        self.viewer = Viewer(self.send_json, payload=self.payload, rate=settings.MESH_TAIL_RATE,
                             max_rate=settings.MESH_TAIL_RATE)
        self._sink = self.viewer.offer
        await self.send_json({"type": "hello", "topic": self.topic.name, "payload": self.payload,
                              "rate": self.viewer.rate, "max_rate": self.viewer.max_rate})
        self._sender = asyncio.get_running_loop().create_task(self.viewer.run())
        await hub().watch(self.stream, self._sink)

    async def stop(self) -> None:
        await hub().unwatch(self.stream, self._sink)
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender

    async def rights_changed(self) -> None:
        if self.payload != self.viewer.payload:
            self.viewer.set_payload(self.payload)
            self.viewer.say({"type": "access", "payload": self.payload})

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if not self._started:
            return
        try:
            reply = self.viewer.handle(self.parse(text_data, bytes_data))
        except BadMessage as error:
            reply = error.reply()
        self.viewer.say(reply)


class RefusalsConsumer(WatchConsumer):
    """Refused publishes, live: every one the user may see (``/ws/tracing/refusals/``), one
    topic's (``…/topics/<pk>/refusals/``) or one application's (``…/applications/<pk>/refusals/``).

    On connect it sends the refusals its process kept for the scope (the last
    :data:`KEEP_REFUSALS`), then each as it comes, at most ``MESH_TAIL_RATE`` a second (the rest
    counted in ``skipped``)."""

    def authorise(self, user) -> bool:
        kwargs = self.scope["url_route"]["kwargs"]
        self.scope_kind = kwargs.get("kind", "all")
        self.target = None
        if self.scope_kind == "topic":
            self.target = visible_topics(user).filter(pk=kwargs["pk"]).first()
        elif self.scope_kind == "application":
            self.target = Application.objects.restrict(user).filter(pk=kwargs["pk"]).first()
        return self.scope_kind == "all" or self.target is not None

    def groups_to_join(self) -> list[str]:
        if self.scope_kind == "topic":
            return [topic_group(self.target.pk)]
        if self.scope_kind == "application":
            return [application_group(self.target.pk)]
        return []

    def _stream(self) -> Stream:
        keys = redis_keys.keys()
        if self.scope_kind == "topic":
            name = self.target.name
            return Stream(keys.topic_refusals(name), keys.topic_refusals_watch(name), keep=KEEP_REFUSALS)
        if self.scope_kind == "application":
            name = self.target.name
            return Stream(keys.application_refusals(name), keys.application_refusals_watch(name),
                          keep=KEEP_REFUSALS)
        return Stream(keys.refusals, keys.refusals_watch, keep=KEEP_REFUSALS)

    async def start(self) -> None:
        self.reader = RefusalReader(self.user)
        self.stream = self._stream()
        self._queue: list[Any] = []
        self._skipped = 0
        self._wake = asyncio.Event()
        self._sink = self._offer
        kept = await hub().watch(self.stream, self._sink)
        await self.send_json({"type": "hello", "scope": self.scope_kind, "journey_url": journey_url_template()})
        if kept:
            shown = await database_sync_to_async(self.reader.present_all)(kept)
            await self.send_json({"type": "refusals", "refusals": shown, "kept": True})
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def _offer(self, message: TapMessage) -> None:
        """Queue what fits in a second's worth, decoding only that; count the rest, and what the
        runtimes could not send, as skipped."""
        room = max(0, settings.MESH_TAIL_RATE - len(self._queue))
        taken = min(room, len(message))
        self._queue.extend(message.item(i) for i in range(taken))
        self._skipped += len(message) - taken + message.dropped
        self._wake.set()

    async def _send_loop(self) -> None:
        """Present and send what came, at most ``MESH_TAIL_RATE`` refusals a second."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = loop.time()
            records, self._queue = self._queue, []
            skipped, self._skipped = self._skipped, 0
            try:
                shown = await database_sync_to_async(self.reader.present_all)(records)
            except Exception:  # a database hiccup loses these few; the panel goes on
                log.exception("refusals could not be presented")
                continue
            if shown or skipped:
                await self.send_json({"type": "refusals", "refusals": shown, "skipped": skipped})
            await asyncio.sleep(max(0.0, len(records) / settings.MESH_TAIL_RATE - (loop.time() - started)))

    async def stop(self) -> None:
        await hub().unwatch(self.stream, self._sink)
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def rights_changed(self) -> None:
        self.reader.forget(self.user)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        try:
            self.parse(text_data, bytes_data)
            raise BadMessage("type", "this socket takes no messages")
        except BadMessage as error:
            await self.send_json(error.reply())
