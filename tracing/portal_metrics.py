"""The portal's own Prometheus metrics, served on ``/metrics`` (tracing.metrics_views).

Two kinds, because the portal is several processes:

- what happens in the process that serves ``/metrics`` (Prometheus queries and their time,
  chart viewers and pollers) is counted in memory, per process;
- what happens elsewhere or is state is read when Prometheus scrapes: pushes and their duration
  from the totals the push task keeps in Redis (``rollout.push_stats``; pushes run in the Celery
  worker), the newest config version and the runtimes by state from the database.

A registry of its own, so that tests and the runtime's registry never see these series.
"""

from __future__ import annotations

import logging

import redis
from django.db import DatabaseError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from rollout import push_stats
from rollout.models import ConfigVersion, Runtime

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "observe_query", "render"]

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

QUERY_SECONDS = Histogram(
    "meshadmin_prometheus_query_seconds", "Time of the portal's queries to Prometheus, by kind and outcome",
    ["kind", "outcome"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
CHART_VIEWERS = Gauge(
    "meshadmin_chart_viewers", "Charts watched over websockets in this process (one per chart and viewer)",
    registry=REGISTRY)
WEBSOCKETS = Gauge(
    "meshadmin_websocket_viewers", "Open chart websockets in this process", registry=REGISTRY)
POLLERS = Gauge(
    "meshadmin_chart_pollers", "Distinct chart queries this process polls for its viewers", registry=REGISTRY)
CHART_UPDATES = Counter(
    "meshadmin_chart_updates", "Chart answers this process fetched and sent to its viewers, by outcome",
    ["outcome"], registry=REGISTRY)


def observe_query(kind: str, outcome: str, seconds: float) -> None:
    QUERY_SECONDS.labels(kind, outcome).observe(seconds)


class _StateCollector:
    """Read at scrape time: pushes (Redis), the newest version and the runtimes (database)."""

    def collect(self):
        yield from self._pushes()
        yield from self._versions()

    def describe(self):
        return []

    def _pushes(self):
        try:
            stats = push_stats.read()
        except redis.RedisError as error:
            log.warning("push totals not read from Redis: %s", error)
            return
        pushes = CounterMetricFamily("meshadmin_config_pushes", "Config push attempts, by kind and outcome",
                                     labels=["kind", "outcome"])
        for (kind, outcome), count in sorted(stats.counts.items()):
            pushes.add_metric([kind, outcome], count)
        yield pushes
        duration = HistogramMetricFamily("meshadmin_config_push_duration_seconds",
                                         "Time of a push attempt: compile, diff, validate, record and publish")
        duration.add_metric([], buckets=stats.cumulative_buckets(), sum_value=stats.seconds_sum)
        yield duration

    def _versions(self):
        try:
            latest = ConfigVersion.objects.order_by("-version").values_list("version", flat=True).first()
            runtimes = list(Runtime.objects.only("last_seen", "config_version", "last_error"))
        except DatabaseError as error:
            log.warning("config versions not read: %s", error)
            return
        yield GaugeMetricFamily("meshadmin_config_version", "The newest recorded MeshConfig version",
                                value=latest or 0)
        counts: dict[tuple[str, str], int] = {}
        for runtime in runtimes:
            key = (runtime.state, runtime.sync_with(latest))
            counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily("meshadmin_runtimes", "Registered runtimes, by state and convergence",
                                   labels=["state", "sync"])
        for (state, sync), count in sorted(counts.items()):
            family.add_metric([state, sync], count)
        yield family


REGISTRY.register(_StateCollector())


def render() -> bytes:
    return generate_latest(REGISTRY)
