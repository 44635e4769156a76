"""OpenTelemetry spans for publishes, and the W3C ``traceparent`` extension of events.

No exporter by default: the tracer is the API's no-op one, so a span costs a function call.
With an OTLP endpoint (``--otlp-endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``) spans go out over
OTLP/HTTP in batches. SkyWalking and most tracing backends accept OTLP.

Every stored event carries ``traceparent`` (the CloudEvents distributed-tracing extension): kept
when the producer set it, otherwise created from the publish span (or at random when tracing is
off), so that the delivery side and the portal can follow the event.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["Tracing", "new_traceparent"]

_propagator = TraceContextTextMapPropagator()


def new_traceparent() -> str:
    """A fresh, sampled W3C traceparent (version 00). Not for secrets: ids need only be unique."""
    digits = random.randbytes(24).hex()
    # all-zero ids are invalid; 2**-64 odds, but the spec says never
    if digits[:32] == _ZERO_TRACE or digits[32:] == _ZERO_SPAN:
        return new_traceparent()
    return f"00-{digits[:32]}-{digits[32:]}-01"


_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class Tracing:
    """The runtime's tracer; ``shutdown()`` flushes the exporter."""

    def __init__(self, *, service_name: str = "meshruntime", otlp_endpoint: str | None = None,
                 attributes: Mapping[str, str] | None = None) -> None:
        self._provider = None
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            resource = Resource.create({"service.name": service_name, **(attributes or {})})
            self._provider = TracerProvider(resource=resource)
            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            self.tracer = self._provider.get_tracer("meshruntime")
        else:
            self.tracer = trace.NoOpTracer()
        self.enabled = self._provider is not None

    def parent_context(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's trace context from the request's ``traceparent`` header, if any."""
        if not self.enabled or "traceparent" not in headers:
            return None
        return _propagator.extract(headers)

    def traceparent(self, span: trace.Span) -> str:
        """The traceparent naming ``span`` (random when tracing is off)."""
        context = span.get_span_context()
        if not context.is_valid:
            return new_traceparent()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
