"""A subscriber that follows the CloudEvents HTTP binding, and Apache EventMesh's Java SDK requests.

``receiving()`` serves webhooks that read every delivery with the ``cloudevents`` SDK's v1
``from_http`` (as a subscriber following the binding would) and keep the raw request too;
``sdk_request(name)`` is one of the Java SDK's requests in ``fixtures/eventmesh/`` (the README
there says where every byte comes from), and ``send_raw`` sends it unchanged over a TCP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from cloudevents.v1.http import from_http

from meshruntime.delivery.signing import verify

FIXTURES = Path(__file__).parent / "fixtures" / "eventmesh"


def secret_for(subscription_id: str) -> str:
    """The webhook secret ``factories.subscription`` gives a subscription."""
    return f"whsec-{subscription_id}-0123456789abcdef"


def sdk_request(name: str) -> bytes:
    """The request of fixture ``name`` as the SDK sends it (see the fixtures' README)."""
    text = (FIXTURES / f"{name}.http").read_text(encoding="utf-8")
    lines = text.split("\n")
    while lines[0].startswith("#"):
        lines.pop(0)
    blank = lines.index("")
    head, body = lines[:blank], "\n".join(lines[blank + 1:]).removesuffix("\n").encode("utf-8")
    [length] = [int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:")]
    assert length == len(body), f"{name}: Content-Length {length} but the body is {len(body)} bytes"
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


async def send_raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh connection, bytes as given; the status, headers and body back."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class BindingReceiver:
    """Webhooks that read every delivery with the ``cloudevents`` SDK's v1 ``from_http``.

    ``/events`` records what it read and answers 200 (400 with the SDK's error if it cannot read
    it). ``/responder`` answers ``await respond(event)``: a response, (status, JSON body), or None
    for 200 with a JSON pong.
    """

    def __init__(self, respond: Callable[[Any], Any] | None = None) -> None:
        self.events: list[Any] = []  # cloudevents.v1.http.CloudEvent, as the SDK read them
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.errors: list[str] = []
        self.respond = respond
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _read(self, request: web.Request):
        body = await request.read()
        headers = dict(request.headers)
        verify(secret_for(request.headers["Mesh-Subscription"]), headers["Mesh-Signature"], body)
        try:
            event = from_http(headers, body)
        except Exception as error:  # what the SDK raises is what a subscriber would see
            async with self._arrived:
                self.errors.append(f"{type(error).__name__}: {error}")
                self._arrived.notify_all()
            return None, web.json_response({"error": str(error)}, status=400)
        async with self._arrived:
            self.events.append(event)
            self.raw.append((headers, body))
            self._arrived.notify_all()
        return event, None

    async def events_hook(self, request: web.Request) -> web.Response:
        _, refused = await self._read(request)
        return refused or web.Response(status=200)

    async def responder_hook(self, request: web.Request) -> web.Response:
        event, refused = await self._read(request)
        if refused is not None:
            return refused
        answer = await self.respond(event) if self.respond is not None else None
        if isinstance(answer, web.StreamResponse):
            return answer
        status, value = answer or (200, {"pong": event["id"], "topic": event["subject"]})
        return web.json_response(value, status=status)

    async def wait_for(self, predicate: Callable[[BindingReceiver], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self))

    def with_id(self, event_id: str):
        [event] = [e for e in self.events if e["id"] == event_id]
        return event

    def delivery(self, subscription: str, event_id: str) -> tuple[Any, dict[str, str], bytes]:
        """Event ``event_id`` as ``subscription`` delivered it: the SDK's reading, the headers, the body."""
        [found] = [(event, headers, body) for event, (headers, body) in zip(self.events, self.raw, strict=True)
                   if event["id"] == event_id and headers["Mesh-Subscription"] == subscription]
        return found


@contextlib.asynccontextmanager
async def receiving(respond: Callable[[Any], Any] | None = None) -> AsyncIterator[BindingReceiver]:
    receiver = BindingReceiver(respond)
    app = web.Application()
    app.router.add_post("/events", receiver.events_hook)
    app.router.add_post("/responder", receiver.responder_hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # noqa: SLF001 - port 0
    try:
        yield receiver
    finally:
        await runner.cleanup()


