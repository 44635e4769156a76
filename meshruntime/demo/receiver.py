"""A webhook receiver that verifies deliveries: the demo subscriber, and the tests'.

It accepts CloudEvents in binary and structured mode, checks the ``Mesh-Signature`` header with
the subscription's secret, and records what arrived (event id, receive time, headers). What it
answers is up to ``respond``: the tests make it fail, stall or refuse on purpose.

    python -m meshruntime.demo.receiver --listen 127.0.0.1:8800 --secret whsec-...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from meshruntime.delivery.signing import SIGNATURE_HEADER, SignatureError, verify

__all__ = ["Received", "Receiver"]

log = logging.getLogger(__name__)

# (received, request) -> None to answer 200, or a response to send instead
Respond = Callable[["Received", web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(slots=True)
class Received:
    event_id: str
    at: float  # time.time() on arrival
    mode: str  # "binary" or "structured"
    subscription: str | None
    attempt: int
    body: bytes
    headers: dict[str, str] = field(repr=False)


class Receiver:
    """An aiohttp app on ``host:port`` (0: any free port); ``url`` is known after :meth:`start`."""

    def __init__(self, *, secret: str | None = None, respond: Respond | None = None,
                 host: str = "127.0.0.1", port: int = 0, keep_bodies: bool = True) -> None:
        self.secret = secret
        self.respond = respond
        self.host = host
        self.port = port
        self.keep_bodies = keep_bodies
        self.received: list[Received] = []
        self.answered: list[tuple[str, int]] = []  # (event id, status) of every request
        self.delivered: set[str] = set()  # ids answered 2xx at least once
        self.delivered_count = 0  # 2xx answers, duplicates included
        self.bad_signatures = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def ids(self) -> list[str]:
        """Ids of events answered 2xx, in arrival order (duplicates included)."""
        return [event_id for event_id, status in self.answered if 200 <= status < 300]

    @property
    def duplicates(self) -> int:
        """2xx answers beyond the first for an event: what at-least-once delivery cost."""
        return self.delivered_count - len(self.delivered)

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - port 0 resolved
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            return await self._answer(request)
        finally:
            self.concurrent -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        at = time.time()
        if self.secret is not None:
            try:
                verify(self.secret, request.headers.get(SIGNATURE_HEADER), body)
            except SignatureError as error:
                self.bad_signatures += 1
                return web.json_response({"error": str(error)}, status=401)
        if "ce-id" in request.headers:
            mode, event_id = "binary", request.headers["ce-id"]
        else:
            mode, event_id = "structured", orjson.loads(body).get("id", "")
        received = Received(event_id, at, mode, request.headers.get("Mesh-Subscription"),
                            int(request.headers.get("Mesh-Delivery-Attempt", "0")),
                            body if self.keep_bodies else b"", dict(request.headers) if self.keep_bodies else {})
        response = await self.respond(received, request) if self.respond is not None else None
        status = 200 if response is None else response.status
        async with self._arrived:
            self.received.append(received)
            self.answered.append((event_id, status))
            if 200 <= status < 300:
                self.delivered.add(event_id)
                self.delivered_count += 1
            self._arrived.notify_all()
        return response if response is not None else web.Response(status=200)


def main() -> None:  # pragma: no cover - the demo subscriber
    parser = argparse.ArgumentParser(prog="meshruntime.demo.receiver",
                                     description="Receive and verify webhook deliveries; print them.")
    parser.add_argument("--listen", default="127.0.0.1:8800")
    parser.add_argument("--secret", help="the subscription's signing secret (unchecked without)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")

    async def show(received: Received, request: web.Request) -> None:
        log.info("%s %s attempt %s (%s mode)", received.subscription, received.event_id, received.attempt,
                 received.mode)
        return None

    async def serve() -> None:
        receiver = await Receiver(secret=args.secret, respond=show, host=host or "127.0.0.1", port=int(port),
                                  keep_bodies=False).start()
        print(f"receiving on {receiver.url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
