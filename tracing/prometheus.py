"""Queries to Prometheus: one client, a deadline on every call, answers as plain data.

Through ``prometheus-api-client`` (the project's brief names it): it speaks Prometheus's HTTP
API, keeps a connection pool, and turns an error status into an exception with Prometheus's own
message. It is synchronous (``requests``), so calls run on a small thread pool of their own;
the shared pollers (``tracing.pollers``) make one call per distinct chart per refresh, whatever
the number of viewers, so a handful of threads carries any number of pages. Its retries are
switched off: the poller's next refresh is the retry, and a retry inside a refresh would only
hold a chart longer on a Prometheus that is down.

Every call has a deadline (``PROMETHEUS_TIMEOUT_SECONDS``): as ``requests``' connect and read
timeouts, and around the whole call on the event loop, so a Prometheus that accepts and never
answers costs a chart one timeout, never a hung page.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import requests
from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from . import portal_metrics

__all__ = ["PrometheusUnavailable", "Series", "configured", "query_instant", "query_range", "unavailable_reason"]

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prometheus")


class PrometheusUnavailable(Exception):
    """Prometheus could not answer: ``message`` says what happened, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass
class Series:
    """One series of an answer: its labels and its ``(unix seconds, value)`` points; a value that
    is not a number (NaN, ±Inf) is None, a gap in the chart."""

    labels: dict[str, str]
    points: list[tuple[float, float | None]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "points": self.points}


def configured() -> bool:
    return bool(settings.PROMETHEUS_URL)


def unavailable_reason() -> PrometheusUnavailable | None:
    """Why no chart can have data at all, or None when a Prometheus is configured."""
    if configured():
        return None
    note = settings.PROMETHEUS_UNAVAILABLE
    return PrometheusUnavailable(
        note or "No Prometheus is configured, so there are no rates to show.",
        "Set PROMETHEUS_URL to a Prometheus that discovers the runtimes through this portal "
        "(docs/metrics.md); `make demo` starts one when the `prometheus` package is installed "
        "(./scripts/system-deps installs it).")


@lru_cache(maxsize=4)
def _client(url: str, timeout: float) -> PrometheusConnect:
    # read=False: a read timeout surfaces as itself (requests' Timeout), not as a "max retries"
    # connection error, so the chart can say that Prometheus was slow rather than away
    return PrometheusConnect(url=url.rstrip("/"), timeout=timeout,
                             retry=Retry(total=0, connect=0, read=False, redirect=0, status=0))


def _number(value: str) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _series(result: list[dict[str, Any]]) -> list[Series]:
    out = []
    for item in result:
        if "values" in item:
            points = [(float(t), _number(v)) for t, v in item["values"]]
        else:
            t, v = item["value"]
            points = [(float(t), _number(v))]
        out.append(Series(dict(item.get("metric", {})), points))
    return out


def _explain(error: BaseException, url: str, timeout: float) -> PrometheusUnavailable:
    hint = f"Check that Prometheus runs and that PROMETHEUS_URL ({url}) is right."
    if isinstance(error, TimeoutError | requests.Timeout):
        return PrometheusUnavailable(f"Prometheus did not answer within {timeout:g} s.", hint)
    if isinstance(error, requests.ConnectionError):
        return PrometheusUnavailable("Prometheus is unreachable (no connection).", hint)
    if isinstance(error, PrometheusApiClientException):
        return PrometheusUnavailable(f"Prometheus refused the query: {error}", "")
    if isinstance(error, requests.RequestException | ValueError | KeyError):
        return PrometheusUnavailable(f"Prometheus gave an answer that is not one: {error}", hint)
    raise error


async def _call(kind: str, method: str, *args: Any) -> list[Series]:
    reason = unavailable_reason()
    if reason is not None:
        raise reason
    url, timeout = settings.PROMETHEUS_URL, float(settings.PROMETHEUS_TIMEOUT_SECONDS)
    client = _client(url, timeout)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    outcome = "error"
    try:
        async with asyncio.timeout(timeout + 0.5):  # requests' timeouts first; this one if they fail
            result = await loop.run_in_executor(_pool, lambda: getattr(client, method)(*args))
        series = _series(result)
        outcome = "ok"
        return series
    except Exception as error:
        raise _explain(error, url, timeout) from error
    finally:
        portal_metrics.observe_query(kind, outcome, time.perf_counter() - started)


async def query_range(promql: str, start: float, end: float, step: float) -> list[Series]:
    """``promql`` evaluated every ``step`` seconds from ``start`` to ``end`` (unix seconds)."""
    return await _call("range", "custom_query_range", promql, datetime.fromtimestamp(start, UTC),
                       datetime.fromtimestamp(end, UTC), f"{step:g}")


async def query_instant(promql: str) -> list[Series]:
    """``promql`` evaluated now: one point per series."""
    return await _call("instant", "custom_query", promql)
