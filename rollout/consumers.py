"""``/ws/runtimes/``: live updates of the runtimes and config version pages.

Authenticated and authorised in ``connect()`` before ``accept()`` (anonymous visitors are
refused); one group per key prefix; every message carries RuntimeSerializer's output, the same
as ``/api/v1/runtimes/``. On connect the consumer sends the whole registry, so a page rendered a
moment earlier cannot miss a change that happened in between.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import live, push
from .models import Runtime


@database_sync_to_async
def _may_view(user) -> bool:
    return not Runtime.objects.restrict(user).query.is_empty()


@database_sync_to_async
def _snapshot(user) -> dict:
    latest = push.latest_version()
    return {"type": "snapshot", "runtimes": live.serialize(Runtime.objects.restrict(user), latest),
            "latest": live.version_summary(latest)}


class RuntimeConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not await _may_view(user):
            await self.close(code=4403)
            return
        self.group = live.channel_group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await _snapshot(user))

    async def disconnect(self, code) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def runtimes_update(self, event) -> None:
        await self.send_json({"type": "runtimes", "runtimes": event["runtimes"], "latest": event["latest"]})

    async def runtimes_forget(self, event) -> None:
        await self.send_json({"type": "forget", "forgotten": event["forgotten"]})

    async def config_version(self, event) -> None:
        await self.send_json({"type": "version", "runtimes": event["runtimes"], "latest": event["latest"]})
