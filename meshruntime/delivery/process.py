"""Delivery in a process of its own, so that publishing and delivering use two CPUs, not one.

A runtime started from the command line delivers from a child process (``--delivery-process``,
the default there): the publish path and the delivery engine no longer queue behind each other
on one event loop, which is what a delivery's latency under load was mostly made of.

:class:`DeliveryProcess` is the runtime's side, with the surface of
:class:`~meshruntime.delivery.manager.DeliveryManager` that the runtime uses (``apply_config``,
``start``, ``stop``, ``counters``) plus ``metrics_text`` for ``/metrics``. The child runs
``python -m meshruntime.delivery.process``, the same :class:`DeliveryManager` as in-process
runtimes (tests) use, under the runtime's id as its consumer name:

- its settings come as the first line on its standard input, each applied configuration
  document as a line after it (the runtime checks a document before sending it, so a document
  the engine cannot use is refused as a whole, as in-process), with the subscriptions the
  runtime's access policy holds (``holds``: the child has no rules of its own);
- it serves its Prometheus metrics and its counters on a loopback port that it prints once
  ready (with the runtime's own HTTP server, :mod:`meshruntime.server`); the runtime reads them
  with the delivery's HTTP client and adds them to its own ``/metrics`` and heartbeat;
- it dies with the runtime (``PR_SET_PDEATHSIG`` on Linux, and the end of its standard input
  anywhere), so a runtime killed with -9 leaves no delivering orphan behind;
- when it dies on its own, the runtime starts another one, which takes up the entries the dead
  one held (its own pending entries, under the same consumer name) before anything new.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from meshruntime.journey import JourneyRecorder
from meshruntime.policy import Policy
from meshruntime.server import HttpServer, Request, Response, error_response
from meshruntime.skywalking import DeliveryTracer, reporter_for, service_name
from meshruntime.store.storeset import open_stores

from .http1 import Http1Client, HttpError
from .manager import DeliveryManager
from .spec import specs_from_config
from .worker import DeliverySettings

log = logging.getLogger(__name__)

__all__ = ["DeliveryProcess"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_READY = "delivery ready on port "


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the runtime dies (Linux; stdin EOF elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class DeliveryProcess:
    """The delivery engine in a child process, started again whenever it dies."""

    def __init__(
        self,
        *,
        connections: dict[str, str],
        mesh_url: str,
        prefix: str,
        consumer: str,
        application: str | None,
        settings: DeliverySettings,
        journey_sample_rate: float,
        journey_ttl_seconds: int,
        user_agent: str,
        shutdown_timeout: float = 10.0,
        skywalking_url: str | None = None,
        restart_delay: float = 1.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.application = application
        self.restart_delay = restart_delay
        self.start_timeout = start_timeout
        self._settings_line = orjson.dumps({
            "connections": connections, "mesh_url": mesh_url, "prefix": prefix, "consumer": consumer,
            "application": application,
            "visibility_timeout_s": settings.visibility_timeout_s, "journey_sample_rate": journey_sample_rate,
            "journey_ttl_seconds": journey_ttl_seconds, "user_agent": user_agent,
            "shutdown_timeout": shutdown_timeout, "skywalking_url": skywalking_url,
        }) + b"\n"
        self._doc_line: bytes | None = None
        self.held: dict[str, str] = {}  # subscriptions the access policy holds (last document), and why
        self._process: asyncio.subprocess.Process | None = None
        self._port: int | None = None
        self._supervisor: asyncio.Task | None = None
        self._stopping = False
        self._running = asyncio.Event()
        self._counters: dict[str, float] = {}
        self._http = Http1Client(user_agent=user_agent)
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    # -- configuration ---------------------------------------------------------------------------
    def apply_config(self, doc: dict[str, Any], *, policy: Policy | None = None) -> None:
        """Check the document as the engine would (raising refuses it), then pass on what the engine
        reads of it: this runtime's subscriptions, those the access policy holds (decided here, with
        the runtime's ``policy``), the stores of their topics and the time the document was
        compiled (not the whole document, which may run to megabytes, on the publish path's event
        loop)."""
        specs = specs_from_config(doc, self.application, policy=policy)
        self.held = {sub_id: spec.held for sub_id, spec in specs.items() if spec.held is not None}
        application = self.application
        topics = {spec.topic for spec in specs.values()}
        part = {"version": doc.get("version"), "generated_at": doc.get("generated_at"),
                "stores": doc.get("stores", []), "holds": self.held,
                "topics": [{"name": t["name"], "store": t["store"]} for t in doc.get("topics", ())
                           if t["name"] in topics],
                "subscriptions": [entry for entry in doc.get("subscriptions", ())
                                  if application is None or entry["application"] == application]}
        self._doc_line = orjson.dumps(part) + b"\n"
        process = self._process
        if process is not None and process.returncode is None and process.stdin is not None:
            process.stdin.write(self._doc_line)

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the child and wait (a while) until it runs; it keeps being restarted after."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="delivery-process")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.start_timeout):
                await self._running.wait()

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await self._spawn()
            except Exception as error:  # a child that cannot start is tried again, never given up on
                log.error("delivery process did not start: %s", error)
                await self._discard()
                await asyncio.sleep(self.restart_delay)
                continue
            self._running.set()
            poller = asyncio.create_task(self._poll_counters())
            assert self._process is not None
            code = await self._process.wait()
            poller.cancel()
            self._running.clear()
            self._port = None
            if self._stopping:
                return
            self.restarts += 1
            log.error("delivery process %s exited (%s); starting another one, which takes up its events",
                      self._process.pid, code)
            await asyncio.sleep(self.restart_delay)

    async def _spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                                          os.environ.get("PYTHONPATH")]))}
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meshruntime.delivery.process",
            "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only, no locks taken
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self._settings_line)
        if self._doc_line is not None:
            process.stdin.write(self._doc_line)
        async with asyncio.timeout(self.start_timeout):
            line = (await process.stdout.readline()).decode()
        if not line.startswith(_READY):
            raise RuntimeError(f"unexpected first line {line!r} (exit code {process.returncode})")
        self._port = int(line[len(_READY):])

    async def _discard(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the child gracefully: attempts under way finish (within ``timeout``)."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout + 5):
                    await process.wait()
            except TimeoutError:
                log.warning("delivery process %s did not stop within %s s; killing it", process.pid, timeout)
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        await self._http.close()

    # -- what the child reports ------------------------------------------------------------------
    async def _get(self, path: str) -> bytes | None:
        port = self._port
        if port is None:
            return None
        try:
            response = await self._http.get(f"http://127.0.0.1:{port}{path}", 2.0)
        except (HttpError, TimeoutError):
            return None
        return response.body if response.status == 200 else None

    async def metrics_text(self) -> bytes:
        """The child's metrics in the Prometheus text format (empty while it is down)."""
        return await self._get("/metrics") or b""

    async def _poll_counters(self) -> None:
        while True:
            body = await self._get("/counters")
            if body:
                self._counters = orjson.loads(body)
            await asyncio.sleep(2.0)

    def counters(self) -> dict[str, float]:
        """Totals for the heartbeat, as of the child's last report."""
        return {**self._counters, "delivery_restarts": self.restarts}


# -- the child -------------------------------------------------------------------------------------
async def _child(settings: dict[str, Any], stdin: asyncio.StreamReader) -> None:
    stores = open_stores(settings["connections"], mesh_url=settings["mesh_url"], prefix=settings["prefix"],
                         journey_ttl_seconds=settings["journey_ttl_seconds"],
                         visibility_timeout_s=settings["visibility_timeout_s"])
    assert stores.mesh is not None
    registry = CollectorRegistry(auto_describe=True)
    reporter = tracer = None
    if settings.get("skywalking_url"):  # attempts reported as segments (meshruntime.skywalking)
        reporter = reporter_for(settings["skywalking_url"], metric="meshruntime_delivery_trace_segments",
                                registry=registry, user_agent=settings["user_agent"])
        tracer = DeliveryTracer(reporter, service=service_name(settings["application"]),
                                instance=settings["consumer"])
        await reporter.start()
    manager = DeliveryManager(
        stores, client=stores.mesh.client, consumer=settings["consumer"], application=settings["application"],
        registry=registry,
        journey=JourneyRecorder(settings["consumer"], sample_rate=settings["journey_sample_rate"]),
        user_agent=settings["user_agent"], tracer=tracer,
        settings=DeliverySettings(visibility_timeout_s=settings["visibility_timeout_s"]))
    await manager.start()

    def handle(request: Request) -> Response:
        if request.path == "/metrics":
            return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)
        if request.path == "/counters":
            return Response.json(200, manager.counters())
        return error_response(404, "not_found", f"{request.path}: the delivery process serves /metrics and /counters")

    # Only the runtime that started this process connects, and it is stopping: no grace to wait.
    server = HttpServer(handle, max_body=64 * 1024, shutdown_grace=0)
    _host, port = await server.start("127.0.0.1", 0)
    print(f"{_READY}{port}", flush=True)
    gc.collect()  # see meshruntime.__main__: what start-up built is never scanned again
    gc.freeze()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def follow_configs() -> None:
        while line := await stdin.readline():
            try:
                doc = orjson.loads(line)
                manager.apply_config(doc, holds=doc.get("holds", {}))  # decided by the runtime
                stores.apply_document(doc)
            except Exception:  # the runtime checked it; keep delivering on the previous one
                log.exception("delivery process: configuration not applied")
        if not stop.is_set():  # the runtime is gone without a word: stop as abruptly as it did
            log.error("delivery process: the runtime is gone; exiting")
            os._exit(1)

    follower = asyncio.create_task(follow_configs())
    await stop.wait()
    follower.cancel()
    await manager.stop(timeout=settings["shutdown_timeout"])
    if reporter is not None:
        await reporter.stop()
    await server.shutdown()
    await stores.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="meshruntime.delivery.process",
                                     description="The delivery engine of a runtime (started by the runtime).")
    parser.add_argument("--log-level", default=os.environ.get("MESH_LOG_LEVEL", "INFO"))
    args = parser.parse_args()
    # Ctrl-C in a terminal reaches the whole process group; the runtime stops this process itself
    # (SIGTERM, after its own requests are done), so the child does not stop on its own first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[delivery]: %(message)s")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader(limit=1 << 28)  # a configuration document is one line
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
        first = await stdin.readline()
        if not first:
            return
        await _child(orjson.loads(first), stdin)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(run())
    else:
        uvloop.run(run())


if __name__ == "__main__":
    main()
