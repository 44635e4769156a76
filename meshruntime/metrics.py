"""Prometheus metrics of one runtime, served on the runtime's own port under ``/metrics``.

Each :class:`RuntimeMetrics` has a registry of its own, so several runtimes in one process (the
tests) do not collide. Labelled children are looked up once and kept: on the hot path a count
is one dict lookup and one ``inc``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "RuntimeMetrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class _Counts:
    """A labelled counter kept as plain ints and turned into a metric family at scrape time.

    Incrementing a prometheus_client counter takes a lock and a few calls; a publish counts
    several things, so the hot path adds to a dict instead and Prometheus reads it when it
    scrapes.
    """

    def __init__(self, name: str, documentation: str, labels: list[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def add(self, key: tuple[str, ...], n: float = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + n

    def total(self) -> float:
        return sum(self.values.values())

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(list(key), value)
        yield family

    def describe(self):
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.published = _Counts(
            "meshruntime_events_published", "Events accepted and stored, by topic and publishing application",
            ["topic", "application"], r)
        self.published_bytes = _Counts(
            "meshruntime_published_bytes", "Bytes of the events accepted and stored (structured mode, as stored), "
            "by topic and publishing application", ["topic", "application"], r)
        # topic and application are empty when not known (a bad key) or not trusted (a topic
        # that does not exist: its name is the client's, and would make series without end)
        self.refusals = _Counts(
            "meshruntime_publish_refusals", "Events refused, by reason, topic and application",
            ["reason", "topic", "application"], r)
        self.routed = _Counts(
            "meshruntime_routed_copies", "Copies written by routing rules, by rule and source topic",
            ["rule", "topic"], r)
        self.routed_refused = _Counts(
            "meshruntime_routed_copies_refused", "Copies a routing rule did not make because the event fails the "
            "target topic's schema (the event itself was stored), by rule, target topic and reason",
            ["rule", "target", "reason"], r)
        self.store_errors = _Counts(
            "meshruntime_store_errors", "Failed store operations, by operation", ["operation"], r)
        self.append_latency = Histogram(
            "meshruntime_append_latency_seconds", "Time of one pipelined append round trip to the store",
            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "meshruntime_append_batch_size", "Events per pipelined append (coalesced across requests)",
            buckets=BATCH_BUCKETS, registry=r)
        self.config_version = Gauge(
            "meshruntime_config_version", "Version of the applied MeshConfig document", registry=r)
        self.tap_messages = Counter(
            "meshruntime_tap_messages", "Event copies sent to the live tap", registry=r)
        self.tap_dropped = Counter(
            "meshruntime_tap_dropped", "Live tap copies dropped (its buffer was full, or Redis refused the send)",
            registry=r)

    def count_published(self, topic: str, application: str, n: int = 1, size: int = 0) -> None:
        key = (topic, application)
        self.published.add(key, n)
        self.published_bytes.add(key, size)

    def count_refusal(self, reason: str, n: int = 1, topic: str = "", application: str = "") -> None:
        self.refusals.add((reason, topic, application), n)

    def count_routed(self, rule: str, n: int = 1, topic: str = "") -> None:
        self.routed.add((rule, topic), n)

    def count_copy_refused(self, rule: str, target: str, reason: str, n: int = 1) -> None:
        self.routed_refused.add((rule, target, reason), n)

    def count_store_error(self, operation: str) -> None:
        self.store_errors.add((operation,))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def counters(self) -> dict[str, float]:
        """Totals for the heartbeat (the portal shows them without scraping Prometheus)."""
        return {
            "published": self.published.total(),
            "refused": self.refusals.total(),
            "routed": self.routed.total(),
            "routed_refused": self.routed_refused.total(),
            "store_errors": self.store_errors.total(),
        }
