"""OpenTelemetry: no exporter by default; with an OTLP endpoint, one span per publish, exported."""

from __future__ import annotations

import asyncio

from aiohttp import web
from factories import key_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from runtime_harness import event, running_runtime

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_without_an_endpoint_there_is_no_exporter(redis_url, key_prefix, redis_client):
    async with running_runtime(redis_url, key_prefix) as h:
        assert h.runtime.tracing.enabled is False
        assert (await h.publish("orders.shipped", event(1))).status == 202


async def test_publishes_are_exported_as_spans_over_otlp(redis_url, key_prefix, redis_client):
    received: list[ExportTraceServiceRequest] = []
    arrived = asyncio.Event()

    async def collector(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        arrived.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", collector)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with running_runtime(redis_url, key_prefix, otlp_endpoint=f"http://127.0.0.1:{port}") as h:
            assert h.runtime.tracing.enabled
            ok = await h.publish("orders.shipped", event(1), headers={"traceparent": CALLER})
            assert ok.status == 202
            denied = await h.publish("audit.orders", event(2))
            assert denied.status == 403
            [stored] = h.stored("orders.shipped")
        # stopping the runtime flushes the exporter
        async with asyncio.timeout(20):
            await arrived.wait()
    finally:
        await runner.cleanup()

    spans = [span for message in received for resource in message.resource_spans
             for scope in resource.scope_spans for span in scope.spans]
    by_name = {span.name: span for span in spans}
    publish = by_name["publish orders.shipped"]
    # a child of the caller's trace, and the stored event carries that trace
    assert publish.trace_id.hex() == CALLER.split("-")[1]
    assert publish.parent_span_id.hex() == CALLER.split("-")[2]
    assert stored["traceparent"] == f"00-{publish.trace_id.hex()}-{publish.span_id.hex()}-01"
    attributes = {a.key: a.value for a in publish.attributes}
    assert attributes["meshadmin.application"].string_value == "billing"
    assert attributes["messaging.destination.name"].string_value == "orders.shipped"
    failed = by_name["publish audit.orders"]
    assert failed.status.code == 2  # ERROR
    assert {a.key: a.value for a in failed.attributes}["meshadmin.refusal"].string_value == "forbidden"
    assert key_for("billing") not in str(received)  # keys never leave in spans
