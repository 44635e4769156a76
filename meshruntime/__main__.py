"""``meshruntime`` / ``python -m meshruntime``: run one mesh runtime until SIGTERM.

Every flag has an environment variable (shown in ``--help``); flags win. Examples::

    # sidecar of the application "billing", configuration pushed by the portal through Redis
    python -m meshruntime --application billing --listen 127.0.0.1:8701 \\
        --store-url redis://127.0.0.1:6379/0 --config-redis-url redis://127.0.0.1:6379/0

    # standalone gateway from a local MeshConfig file (re-read when it changes)
    python -m meshruntime --gateway --config-file mesh.json --store-url redis://127.0.0.1:6379/0

    # topics on several stores: one connection per catalog connection name (docs/stores.md)
    python -m meshruntime --application billing --config-redis-url redis://127.0.0.1:6379/0 \
        --store default=redis://127.0.0.1:6379/0 --store orders=kafka://broker:9092

On SIGTERM (or SIGINT) the runtime stops accepting connections, answers every request that has
reached it (in flight, pipelined, or arriving on an idle keep-alive connection within the
server's grace), closes each connection without a reset, writes what is still queued, and
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from .app import Runtime, Settings, StoresMissing
from .config import DEFAULT_MAX_DOCUMENT_BYTES
from .keys import DEFAULT_PREFIX
from .mqtt_ingest import parse_ingest
from .publish import Limits
from .skywalking import TRACE_MODES
from .store.storeset import parse_connections, read_connections_file
from .tap import DATA_LIMIT

log = logging.getLogger("meshruntime")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":PORT" asks for all


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {value!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshruntime",
                                description="Meshadmin mesh runtime (sidecar or gateway).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--application", default=_env("MESH_APPLICATION"),
                      help="sidecar of this application: only its keys are accepted [MESH_APPLICATION]")
    mode.add_argument("--gateway", action="store_true", default=_env("MESH_GATEWAY") in ("1", "true", "yes"),
                      help="gateway mode: any application's key is accepted [MESH_GATEWAY=1]")
    p.add_argument("--listen", type=_listen, default=_listen(_env("MESH_LISTEN", "127.0.0.1:8700")),
                   help="HOST:PORT of the publish API, /metrics, /healthz and /readyz (port 0: any free "
                        "port) [MESH_LISTEN, default 127.0.0.1:8700]")
    p.add_argument("--store-url", default=_env("MESH_STORE_URL", _env("REDIS_URL")),
                   help="the store connection named 'default' (redis://..., kafka://..., nats://...) "
                        "[MESH_STORE_URL, else REDIS_URL]")
    p.add_argument("--store", action="append", default=[], metavar="NAME=URL",
                   help="the URL of the store connection NAME, as the catalog's event stores name them; "
                        "repeat for each (MESH_STORES: items separated by spaces)")
    p.add_argument("--mqtt-ingest", action="append", default=[], metavar="STORE[=APPLICATION]",
                   help="ingest what devices publish to the broker of the catalog's MQTT store STORE, as the "
                        "sidecar's application (a gateway names one); repeat for each "
                        "(MESH_MQTT_INGEST: items separated by spaces)")
    p.add_argument("--stores-file", type=Path, default=_env("MESH_STORES_FILE"),
                   help="a file of NAME=URL lines ('#' comments), read at start [MESH_STORES_FILE]")
    p.add_argument("--config-redis-url", default=_env("MESH_CONFIG_REDIS_URL"),
                   help="Redis the portal pushes MeshConfig to; also receives tap, journeys and heartbeats "
                        "[MESH_CONFIG_REDIS_URL]")
    p.add_argument("--config-file", type=Path, default=_env("MESH_CONFIG_FILE"),
                   help="a local MeshConfig document (standalone mode; re-read when it changes) "
                        "[MESH_CONFIG_FILE]")
    p.add_argument("--config-cache", type=Path, default=_env("MESH_CONFIG_CACHE"),
                   help="where to keep the last applied document, to start without Redis [MESH_CONFIG_CACHE]")
    p.add_argument("--prefix", default=_env("MESH_PREFIX", DEFAULT_PREFIX),
                   help=f"Redis key prefix [MESH_PREFIX, {DEFAULT_PREFIX}]")
    p.add_argument("--runtime-id", default=_env("MESH_RUNTIME_ID"),
                   help="this runtime's id [MESH_RUNTIME_ID]")
    p.add_argument("--max-event-bytes", type=int, default=int(_env("MESH_MAX_EVENT_BYTES", str(1 << 20))),
                   help="largest event, serialized (413 above) [MESH_MAX_EVENT_BYTES, 1 MiB]")
    p.add_argument("--max-request-bytes", type=int, default=int(_env("MESH_MAX_REQUEST_BYTES", str(8 << 20))),
                   help="largest request body (413 above) [MESH_MAX_REQUEST_BYTES, 8 MiB]")
    p.add_argument("--max-batch-events", type=int, default=int(_env("MESH_MAX_BATCH_EVENTS", "1000")),
                   help="most events in one request (413 above) [MESH_MAX_BATCH_EVENTS, 1000]")
    p.add_argument("--max-config-bytes", type=int,
                   default=int(_env("MESH_MAX_CONFIG_BYTES", str(DEFAULT_MAX_DOCUMENT_BYTES))),
                   help="largest configuration document read; a longer one is refused by its length, unread, "
                        "and the previous configuration kept [MESH_MAX_CONFIG_BYTES, 32 MiB]")
    p.add_argument("--max-reply-wait-ms", type=int, default=int(_env("MESH_MAX_REPLY_WAIT_MS", "60000")),
                   help="longest wait of an EventMesh request (code 101) for its reply [MESH_MAX_REPLY_WAIT_MS, 60000]")
    p.add_argument("--journey-sample-rate", type=float,
                   default=float(_env("MESH_JOURNEY_SAMPLE_RATE", "1.0")),
                   help="share of events whose journey is recorded, 0..1 [MESH_JOURNEY_SAMPLE_RATE, 1]")
    p.add_argument("--journey-ttl", type=int, default=int(_env("MESH_JOURNEY_TTL", "86400")),
                   help="seconds a journey is kept [MESH_JOURNEY_TTL, 86400]")
    p.add_argument("--tap-data-limit", type=int, default=int(_env("MESH_TAP_DATA_LIMIT", str(DATA_LIMIT))),
                   help="bytes of an event's data that a live tap copy carries; larger data is cut there "
                        "[MESH_TAP_DATA_LIMIT, 64 KiB]")
    p.add_argument("--otlp-endpoint", default=_env("MESH_OTLP_ENDPOINT", _env("OTEL_EXPORTER_OTLP_ENDPOINT")),
                   help="OTLP/HTTP endpoint for spans; none by default "
                        "[MESH_OTLP_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT]")
    p.add_argument("--traces", choices=TRACE_MODES, default=_env("MESH_TRACES"),
                   help="where spans go: skywalking (SkyWalking's native protocol, to --skywalking-url), otlp "
                        "(OpenTelemetry, to --otlp-endpoint) or none; by default the one whose URL is given, "
                        "else none [MESH_TRACES]")
    p.add_argument("--skywalking-url", default=_env("MESH_SKYWALKING_URL"),
                   help="the SkyWalking OAP's HTTP address, e.g. http://oap:12800; segments go to its "
                        "/v3/segments [MESH_SKYWALKING_URL]")
    p.add_argument("--shutdown-timeout", type=float, default=float(_env("MESH_SHUTDOWN_TIMEOUT", "10")),
                   help="seconds in-flight requests get on SIGTERM [MESH_SHUTDOWN_TIMEOUT, 10]")
    p.add_argument("--head-timeout", type=_seconds, default=_env("MESH_HEAD_TIMEOUT", "10"),
                   help="seconds a request's line and headers may take to arrive; a slower client gets 408 "
                        "and is disconnected [MESH_HEAD_TIMEOUT, 10]")
    p.add_argument("--visibility-timeout", type=float, default=float(_env("MESH_VISIBILITY_TIMEOUT", "30")),
                   help="seconds after which deliveries a runtime left pending are taken over by another "
                        "runtime of the application [MESH_VISIBILITY_TIMEOUT, 30]")
    p.add_argument("--delivery-process", action=argparse.BooleanOptionalAction,
                   default=_env("MESH_DELIVERY_PROCESS", "1") in ("1", "true", "yes"),
                   help="deliver webhooks from a child process of the runtime, so that publishing and "
                        "delivering use two CPUs; --no-delivery-process keeps one process "
                        "[MESH_DELIVERY_PROCESS, default 1]")
    p.add_argument("--heartbeat-interval", type=float, default=float(_env("MESH_HEARTBEAT_INTERVAL", "10")),
                   help="seconds between heartbeats to the portal [MESH_HEARTBEAT_INTERVAL, 10]")
    p.add_argument("--metrics-url", default=_env("MESH_METRICS_URL"),
                   help="the URL Prometheus scrapes this runtime's /metrics at, sent with every heartbeat for "
                        "the portal's service discovery; default: http://<listen address>/metrics (the host "
                        "name when listening on all interfaces) [MESH_METRICS_URL]")
    p.add_argument("--log-level", default=_env("MESH_LOG_LEVEL", "INFO"), help="[MESH_LOG_LEVEL, INFO]")
    return p


def _connections(args: argparse.Namespace) -> dict[str, str]:
    """Store connections from the file, then MESH_STORES, then --store (each may add names; a
    name given twice with two URLs is an error)."""
    try:
        out = read_connections_file(args.stores_file) if args.stores_file else {}
        for source, items in (("MESH_STORES", (_env("MESH_STORES") or "").split()), ("--store", args.store)):
            for name, url in parse_connections(items, source=source).items():
                if out.get(name, url) != url:
                    raise ValueError(f"{source}: the connection {name!r} is given twice, with two URLs")
                out[name] = url
    except ValueError as error:
        raise SystemExit(f"meshruntime: {error}") from None
    return out


def settings_from_args(args: argparse.Namespace) -> Settings:
    connections = _connections(args)
    if not args.store_url and not connections:
        raise SystemExit("meshruntime: give the event stores: --store-url URL (or MESH_STORE_URL / REDIS_URL) "
                         "for the default one, and --store NAME=URL for each other connection")
    if args.config_file is None and args.config_redis_url is None:
        raise SystemExit("meshruntime: give --config-redis-url (pushed by the portal) or --config-file")
    if not args.application and not args.gateway:
        raise SystemExit("meshruntime: give --application NAME (sidecar) or --gateway")
    if args.max_config_bytes < 1:
        raise SystemExit(f"meshruntime: --max-config-bytes must be 1 or more bytes, got {args.max_config_bytes}")
    if args.tap_data_limit < 0:
        raise SystemExit(f"meshruntime: --tap-data-limit must be 0 or more bytes, got {args.tap_data_limit}")
    host, port = args.listen
    try:
        ingest = [parse_ingest(item) for item in [*(_env("MESH_MQTT_INGEST") or "").split(), *args.mqtt_ingest]]
    except ValueError as error:
        raise SystemExit(f"meshruntime: {error}") from None
    settings = Settings(
        store_url=args.store_url,
        stores=connections,
        mqtt_ingest=ingest,
        application=args.application or None,
        host=host,
        port=port,
        config_redis_url=args.config_redis_url,
        config_file=args.config_file,
        config_cache=args.config_cache,
        max_config_bytes=args.max_config_bytes,
        prefix=args.prefix,
        limits=Limits(max_event_bytes=args.max_event_bytes, max_request_bytes=args.max_request_bytes,
                      max_batch_events=args.max_batch_events, max_reply_wait_ms=args.max_reply_wait_ms),
        journey_sample_rate=args.journey_sample_rate,
        journey_ttl_seconds=args.journey_ttl,
        tap_data_limit=args.tap_data_limit,
        otlp_endpoint=args.otlp_endpoint,
        traces=args.traces,
        skywalking_url=args.skywalking_url,
        shutdown_timeout=args.shutdown_timeout,
        head_timeout=args.head_timeout,
        visibility_timeout=args.visibility_timeout,
        delivery_process=args.delivery_process,
        metrics_url=args.metrics_url or None,
        heartbeat_interval=args.heartbeat_interval,
    )
    if args.runtime_id:
        settings.runtime_id = args.runtime_id
    try:
        settings.trace_mode  # noqa: B018 - checks the flags now, with their names, not at start-up
    except ValueError as error:
        raise SystemExit(f"meshruntime: {error}") from None
    return settings


async def serve(settings: Settings) -> None:
    try:
        runtime = Runtime(settings)
    except ValueError as error:  # a store or Redis URL no engine takes
        raise SystemExit(f"meshruntime: {error}") from None
    try:
        await runtime.start()
    except StoresMissing as error:
        raise SystemExit(f"meshruntime: not starting: {error}") from None
    server = runtime.make_server()
    host, port = await server.start(settings.host, settings.port, backlog=2048)
    runtime.listening(host, port)
    mode = f"sidecar of {settings.application}" if settings.application else "gateway"
    # One line a supervisor (or a test) can wait for; it carries the real port when 0 was asked.
    print(f"meshruntime {settings.runtime_id} ({mode}) listening on http://{host}:{port}", flush=True)
    # What start-up built (modules, the compiled config, the server) lives as long as the process;
    # a full collection would scan it again every few seconds under load, a pause of tens of
    # milliseconds on a small machine, which is what a delivery's p99 sees. Frozen, it is skipped.
    gc.collect()
    gc.freeze()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: no new connections, finishing in-flight requests")
    await server.shutdown(settings.shutdown_timeout)  # closes the listener, answers what it received
    await runtime.stop()  # writes whatever is still queued, closes connections
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio's loop still works
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
