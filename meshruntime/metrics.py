"""Prometheus metrics of one runtime, served on the runtime's own port under ``/metrics``.

Each :class:`RuntimeMetrics` has a registry of its own, so several runtimes in one process (the
tests) do not collide. Labelled children are looked up once and kept: on the hot path a count
is one dict lookup and one ``inc``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "RuntimeMetrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.published = Counter(
            "meshruntime_events_published", "Events accepted and stored, by topic and publishing application",
            ["topic", "application"], registry=r)
        self.refusals = Counter(
            "meshruntime_publish_refusals", "Publish requests refused, by reason",
            ["reason"], registry=r)
        self.routed = Counter(
            "meshruntime_routed_copies", "Copies written by routing rules, by rule", ["rule"], registry=r)
        self.append_latency = Histogram(
            "meshruntime_append_latency_seconds", "Time of one pipelined append round trip to the store",
            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "meshruntime_append_batch_size", "Events per pipelined append (coalesced across requests)",
            buckets=BATCH_BUCKETS, registry=r)
        self.config_version = Gauge(
            "meshruntime_config_version", "Version of the applied MeshConfig document", registry=r)
        self.store_errors = Counter(
            "meshruntime_store_errors", "Failed store operations, by operation", ["operation"], registry=r)
        self.tap_messages = Counter(
            "meshruntime_tap_messages", "Compact event copies sent to the live tap", registry=r)
        self._published: dict[tuple[str, str], Counter] = {}
        self._refusals: dict[str, Counter] = {}
        self._routed: dict[str, Counter] = {}
        self._store_errors: dict[str, Counter] = {}

    def count_published(self, topic: str, application: str, n: int = 1) -> None:
        child = self._published.get((topic, application))
        if child is None:
            child = self._published[(topic, application)] = self.published.labels(topic, application)
        child.inc(n)

    def count_refusal(self, reason: str, n: int = 1) -> None:
        child = self._refusals.get(reason)
        if child is None:
            child = self._refusals[reason] = self.refusals.labels(reason)
        child.inc(n)

    def count_routed(self, rule: str, n: int = 1) -> None:
        child = self._routed.get(rule)
        if child is None:
            child = self._routed[rule] = self.routed.labels(rule)
        child.inc(n)

    def count_store_error(self, operation: str) -> None:
        child = self._store_errors.get(operation)
        if child is None:
            child = self._store_errors[operation] = self.store_errors.labels(operation)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def counters(self) -> dict[str, float]:
        """Totals for the heartbeat (the portal shows them without scraping Prometheus)."""
        def total(metric) -> float:
            return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))
        return {
            "published": total(self.published),
            "refused": total(self.refusals),
            "routed": total(self.routed),
            "store_errors": total(self.store_errors),
        }
