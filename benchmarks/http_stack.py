"""The runtime's hand-written HTTP against the library it replaced, in one run: aiohttp.

The runtime serves with ``meshruntime.server`` (httptools under an asyncio protocol) and pushes
webhooks with ``meshruntime.delivery.http1``, instead of aiohttp's server and client. This keeps
the reason measured:

(server) the same minimal handler (read the small JSON body, answer a small JSON body) served by
         our server and by aiohttp's (an ``Application`` with one route), each in a process of
         its own, driven by a lean keep-alive load generator over 64 connections; the figure is
         the server process's CPU per request;
(client) the same POST (small JSON body, three headers) sent by our client and by aiohttp's
         ``ClientSession`` (64 at a time, keep-alive) to one lean receiver in a process of its
         own; the figure is the client process's CPU per request.

CPU per request, not requests per second, decides the ratios: on a shared machine the wall
clock also measures whoever else runs. Rates are shown beside them.

    .venv/bin/python benchmarks/http_stack.py [-n 20000]

Prints last how many times the CPU aiohttp spends per request ours spends: server, then client.
aiohttp stays a dependency for this reference, the demo producer and receiver, and the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import uvloop  # noqa: E402
from _runtime import cpu_seconds  # noqa: E402
from aiohttp import web  # noqa: E402
from latency import start_receiver  # noqa: E402

from meshruntime.delivery.http1 import Http1Client  # noqa: E402
from meshruntime.server import HttpServer, Request, Response  # noqa: E402

CONNECTIONS = 64
BODY = b'{"specversion":"1.0","id":"e-1","source":"/bench","type":"t","data":{"order_id":"o-1","amount":12}}'
ANSWER = b'{"accepted":1}'
HEADERS = {"Content-Type": "application/cloudevents+json", "Mesh-Subscription": "sub-1",
           "Mesh-Delivery-Attempt": "1"}


# -- the servers (each a process of its own: ``http_stack.py --serve ours|aiohttp``) ----------------
def serve(kind: str) -> None:
    async def main() -> None:
        if kind == "ours":
            def handle(request: Request) -> Response:
                assert request.body  # the body is read before the handler runs
                return Response(200, ANSWER)

            server = HttpServer(handle, max_body=1 << 20)
            _host, port = await server.start("127.0.0.1", 0)
        else:
            async def handle_aiohttp(request: web.Request) -> web.Response:
                assert await request.read()
                return web.Response(body=ANSWER, content_type="application/json")

            app = web.Application()
            app.router.add_post("/events", handle_aiohttp)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - port 0 resolved
        print(port, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    uvloop.run(main())


def start_server(kind: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT)
    return process, int(process.stdout.readline())


async def drive(port: int, total: int) -> float:
    """POST ``total`` requests over CONNECTIONS keep-alive connections, one at a time on each;
    seconds taken. Minimal on purpose: it measures the server, not a client library."""
    request = (b"POST /events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/cloudevents+json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))

    async def lane(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"the server answered {head[:60]!r}")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
        finally:
            writer.close()

    started = time.perf_counter()
    share, extra = divmod(total, CONNECTIONS)
    await asyncio.gather(*(lane(share + (i < extra)) for i in range(CONNECTIONS)))
    return time.perf_counter() - started


async def measure_server(kind: str, n: int, warm: int) -> tuple[float, float]:
    """(server CPU seconds per request, requests per second) of one server."""
    process, port = start_server(kind)
    try:
        await drive(port, warm)
        cpu = cpu_seconds(process.pid)
        seconds = await drive(port, n)
        return (cpu_seconds(process.pid) - cpu) / n, n / seconds
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- the clients (in this process, against one receiver) -----------------------------------------
async def send_ours(url: str, total: int) -> None:
    client = Http1Client(user_agent="bench")
    try:
        async def lane(count: int) -> None:
            for _ in range(count):
                response = await client.post(url, dict(HEADERS), BODY, 5.0)
                if response.status != 200:
                    raise SystemExit(f"the receiver answered {response.status}")

        share, extra = divmod(total, CONNECTIONS)
        await asyncio.gather(*(lane(share + (i < extra)) for i in range(CONNECTIONS)))
    finally:
        await client.close()


async def send_aiohttp(url: str, total: int) -> None:
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session:
        async def lane(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=BODY, headers=HEADERS) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"the receiver answered {response.status}")

        share, extra = divmod(total, CONNECTIONS)
        await asyncio.gather(*(lane(share + (i < extra)) for i in range(CONNECTIONS)))


async def measure_client(send, url: str, n: int, warm: int) -> tuple[float, float]:
    """(client CPU seconds per request, requests per second) of one client; the warm-up and the
    measured run share its pool, as a runtime's pushes do."""
    await send(url, warm)  # connections, caches
    cpu, started = time.process_time(), time.perf_counter()
    await send(url, n)
    return (time.process_time() - cpu) / n, n / (time.perf_counter() - started)


async def main_async(args: argparse.Namespace) -> None:
    n, warm = args.requests, 2000
    servers = {kind: await measure_server(kind, n, warm) for kind in ("ours", "aiohttp")}
    receiver, port = start_receiver()
    try:
        url = f"http://127.0.0.1:{port}/hook"
        clients = {"ours": await measure_client(send_ours, url, n, warm),
                   "aiohttp": await measure_client(send_aiohttp, url, n, warm)}
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)

    print(f"requests: {n} per run (after {warm} of warm-up), {CONNECTIONS} keep-alive connections; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for side, figures in (("server", servers), ("client", clients)):
        for kind, (cpu, rate) in figures.items():
            label = f"{side} {'meshruntime' if kind == 'ours' else 'aiohttp'}:"
            print(f"{label:22} {cpu * 1e6:7.1f} us CPU/request {rate:10,.0f} requests/s")
    print(f"server aiohttp/ours CPU per request = {servers['aiohttp'][0] / servers['ours'][0]:.1f}")
    print(f"client aiohttp/ours CPU per request = {clients['aiohttp'][0] / clients['ours'][0]:.1f}")


def main() -> None:
    if "--serve" in sys.argv:
        serve(sys.argv[sys.argv.index("--serve") + 1])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=20_000, help="requests per run (default 20000)")
    uvloop.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
