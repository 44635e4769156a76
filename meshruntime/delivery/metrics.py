"""Delivery metrics, registered in the runtime's own Prometheus registry (served on ``/metrics``).

Labelled children are cached per subscription, so counting a delivery is a dict lookup and an
``inc``; a revoked subscription's series are removed, so gauges of the gone do not linger.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DeliveryMetrics", "SubscriptionMetrics"]

# publish to 2xx: loopback deliveries take a millisecond, retried ones minutes
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0, 900.0, 3600.0)
OUTCOMES = ("delivered", "dead_lettered", "filtered")


class SubscriptionMetrics:
    """The children of one subscription, looked up once."""

    __slots__ = ("reasons", "dead_letters", "delivered", "filtered", "held", "lag", "latency", "pending",
                 "retries", "_parent", "_id")

    def __init__(self, parent: DeliveryMetrics, subscription: str) -> None:
        self._parent = parent
        self._id = subscription
        self.delivered = parent.deliveries.labels(subscription, "delivered")
        self.dead_letters = parent.deliveries.labels(subscription, "dead_lettered")
        self.filtered = parent.deliveries.labels(subscription, "filtered")
        self.retries = parent.retries.labels(subscription)
        self.latency = parent.latency.labels(subscription)
        self.lag = parent.lag.labels(subscription)
        self.pending = parent.pending.labels(subscription)
        self.held = parent.held.labels(subscription)
        self.reasons: dict[str, Counter] = {}

    def dead_lettered(self, reason: str) -> None:
        self.dead_letters.inc()
        child = self.reasons.get(reason)
        if child is None:
            child = self.reasons[reason] = self._parent.dead_letter_reasons.labels(self._id, reason)
        child.inc()


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "meshruntime_deliveries", "Events that reached a final outcome, by subscription: delivered "
            "(2xx), dead_lettered, or filtered (acknowledged without delivery)",
            ["subscription", "outcome"], registry=r)
        self.retries = Counter(
            "meshruntime_delivery_retries", "Failed attempts that were retried, by subscription",
            ["subscription"], registry=r)
        self.dead_letter_reasons = Counter(
            "meshruntime_dead_letters", "Events moved to a dead-letter stream, by subscription and reason",
            ["subscription", "reason"], registry=r)
        self.latency = Histogram(
            "meshruntime_delivery_latency_seconds", "From publish (the event's store time) to the "
            "subscriber's 2xx", ["subscription"], buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge(
            "meshruntime_consumer_lag", "Events of the topic not yet read for the subscription",
            ["subscription"], registry=r)
        self.pending = Gauge(
            "meshruntime_consumer_pending", "Events read for the subscription and not yet acknowledged "
            "(in flight, waiting for a retry, or read ahead of a free slot)", ["subscription"], registry=r)
        self.held = Gauge(
            "meshruntime_delivery_held", "1 while the access policy holds the subscription's delivery (its "
            "application may not subscribe to its topic): nothing is read, the lag grows", ["subscription"],
            registry=r)
        self._children: dict[str, SubscriptionMetrics] = {}

    def subscription(self, subscription: str) -> SubscriptionMetrics:
        child = self._children.get(subscription)
        if child is None:
            child = self._children[subscription] = SubscriptionMetrics(self, subscription)
        return child

    def forget(self, subscription: str) -> None:
        """Drop a revoked subscription's series."""
        child = self._children.pop(subscription, None)
        if child is None:
            return
        for outcome in OUTCOMES:
            self._remove(self.deliveries, subscription, outcome)
        for metric in (self.retries, self.latency, self.lag, self.pending, self.held):
            self._remove(metric, subscription)
        for reason in child.reasons:
            self._remove(self.dead_letter_reasons, subscription, reason)

    @staticmethod
    def _remove(metric, *labels: str) -> None:
        with contextlib.suppress(KeyError):
            metric.remove(*labels)

    def totals(self) -> dict[str, float]:
        """Totals for the heartbeat: delivered, dead_lettered, filtered, retries."""
        out = {outcome: 0.0 for outcome in OUTCOMES}
        for child in self._children.values():
            out["delivered"] += child.delivered._value.get()  # noqa: SLF001 - no public reader
            out["dead_lettered"] += child.dead_letters._value.get()  # noqa: SLF001
            out["filtered"] += child.filtered._value.get()  # noqa: SLF001
        out["retries"] = sum(c.retries._value.get() for c in self._children.values())  # noqa: SLF001
        return out
