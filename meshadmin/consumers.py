"""The websocket consumer of every path that no route serves."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

#: Close code of a handshake to a path that no route serves (as HTTP's 404; 4403 is "refused").
UNKNOWN_PATH = 4404


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake: without it Channels' router raises "No route found", a 500."""

    async def connect(self) -> None:
        await self.close(code=UNKNOWN_PATH)
