"""The runtime registry: heartbeats from the ``<prefix>runtimes`` stream into Runtime rows.

Runtimes beat every few seconds (meshruntime.heartbeat; fields in docs/meshconfig.md). A
:class:`HeartbeatIngester` reads the stream through a consumer group, keeps the newest beat of
each runtime in a batch, upserts the rows in one statement, acknowledges the entries, and sends
the changed rows to the runtimes pages over Channels.

It runs as its own long-lived process, ``manage.py mesh ingest-heartbeats`` (one Procfile line),
rather than as a periodic Celery task: a blocking XREADGROUP answers within milliseconds of a
beat, so the page converges live, while a task that drains the stream every few seconds adds
that interval to every update and occupies a worker slot forever. Several ingesters may run
(the consumer group shares the entries among them); states that change only with time (a
runtime turning stale or gone) are broadcast by the ingester's periodic sweep, which also forgets
the runtimes silent for ``MESH_RUNTIME_FORGET_SECONDS`` (a day by default).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import live, push, redis_keys
from .models import Runtime

log = logging.getLogger(__name__)

GROUP = "portal"
UPDATE_FIELDS = ["application", "host", "pid", "software_version", "config_version", "config_checksum",
                 "last_error", "counters", "metrics_url", "stores", "journey_sample_rate",
                 "journey_ttl_seconds", "max_config_bytes", "started_at", "last_seen"]


def stream_key() -> str:
    return redis_keys.keys().runtimes


def _text(fields: Mapping[bytes | str, Any], name: str) -> str:
    value = fields.get(name, fields.get(name.encode(), b""))
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _rate(value: str) -> float | None:
    """A sample rate between 0 and 1; None when absent or out of range (never a made-up rate)."""
    try:
        rate = float(value)
    except ValueError:
        return None
    return rate if 0.0 <= rate <= 1.0 else None


def _size_limit(value: str) -> int | None:
    """A byte count of 1 or more that the column holds; None when absent or not one."""
    size = _int(value)
    return size if size and size < 1 << 63 else None


def _metrics_url(value: str) -> str:
    """An http(s) URL with a host, or empty: Prometheus is told to scrape only what parses."""
    try:
        parsed = urlsplit(value)
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return ""
    if parsed.scheme not in ("http", "https") or not parsed.hostname or len(value) > 500:
        return ""
    return value


def runtime_from_heartbeat(fields: Mapping[bytes | str, Any], now: datetime) -> Runtime | None:
    """A Runtime (unsaved) from one heartbeat's fields; None for an entry without a runtime id.

    ``last_seen`` is the beat's ``sent_at``, but never in the future of the portal's clock, so a
    runtime with a fast clock cannot look healthy after it died.
    """
    runtime_id = _text(fields, "runtime_id")[:200]
    if not runtime_id:
        return None
    try:
        counters = json.loads(_text(fields, "counters") or "{}")
    except ValueError:
        counters = {}
    try:
        stores = json.loads(_text(fields, "stores") or "{}")
    except ValueError:
        stores = {}
    sent = _time(_text(fields, "sent_at"))
    return Runtime(
        runtime_id=runtime_id,
        application=_text(fields, "application")[:100],
        host=_text(fields, "host")[:255],
        pid=_int(_text(fields, "pid")),
        software_version=_text(fields, "software_version")[:100],
        config_version=_int(_text(fields, "config_version")),
        config_checksum=_text(fields, "config_checksum")[:64],
        last_error=_text(fields, "error")[:10_000],
        counters=counters if isinstance(counters, dict) else {},
        journey_sample_rate=_rate(_text(fields, "journey_sample_rate")),
        journey_ttl_seconds=_int(_text(fields, "journey_ttl_seconds")),
        metrics_url=_metrics_url(_text(fields, "metrics_url")),
        stores=stores if isinstance(stores, dict) else {},
        max_config_bytes=_size_limit(_text(fields, "max_config_bytes")),
        started_at=_time(_text(fields, "started_at")),
        first_seen=now,
        last_seen=min(sent, now) if sent else now,
    )


def store(runtimes: Iterable[Runtime]) -> list[Runtime]:
    """Upsert the newest beat of each runtime in one statement; return the rows as stored."""
    newest: dict[str, Runtime] = {}
    for runtime in runtimes:
        newest[runtime.runtime_id] = runtime  # stream order: a later beat replaces an earlier one
    if not newest:
        return []
    Runtime.objects.bulk_create(newest.values(), update_conflicts=True, unique_fields=["runtime_id"],
                                update_fields=UPDATE_FIELDS)
    return list(Runtime.objects.filter(runtime_id__in=newest.keys()))


def broadcast_runtimes(runtimes: list[Runtime]) -> None:
    if runtimes:
        live.broadcast_runtimes(runtimes, push.latest_version())


class HeartbeatIngester:
    """Reads heartbeats until stopped. ``consumer`` names this reader in the group; it is stable
    per host by default, so a restarted ingester first takes back the entries it had not
    acknowledged."""

    def __init__(self, client: redis.Redis | None = None, *, consumer: str | None = None, batch: int = 1000,
                 block_ms: int = 1000, sweep_seconds: float = 5.0) -> None:
        self.client = client or redis_keys.client()
        self.stream = stream_key()
        self.consumer = consumer or f"ingester-{socket.gethostname()}"
        self.batch = batch
        self.block_ms = block_ms
        self.sweep_seconds = sweep_seconds
        self._states: dict[str, str] = {}
        self._next_sweep = 0.0
        self._backlog = True  # our own unacknowledged entries first
        self.stopped = False

    def ensure_group(self) -> None:
        try:
            # From the start of the stream: beats sent while the portal was down still count.
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def read(self) -> list[tuple[bytes, dict]]:
        """Our own unacknowledged entries first (after a restart), then new ones, waiting up to
        ``block_ms`` for them."""
        if self._backlog:
            reply = self.client.xreadgroup(GROUP, self.consumer, {self.stream: "0"}, count=self.batch)
            entries = reply[0][1] if reply else []
            self._backlog = len(entries) == self.batch
            if entries:
                return entries
        reply = self.client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch,
                                       block=self.block_ms)
        return reply[0][1] if reply else []

    def step(self) -> list[Runtime]:
        """Read one batch, store it, acknowledge it, broadcast it; return the stored rows."""
        entries = self.read()
        stored: list[Runtime] = []
        if entries:
            now = timezone.now()
            stored = store(filter(None, (runtime_from_heartbeat(fields, now) for _id, fields in entries)))
            self.client.xack(self.stream, GROUP, *(entry_id for entry_id, _ in entries))
            for runtime in stored:
                self._states[runtime.runtime_id] = runtime.state_at(now)
            broadcast_runtimes(stored)
        if time.monotonic() >= self._next_sweep:
            self.sweep()
        return stored

    def sweep(self) -> list[Runtime]:
        """Broadcast the runtimes whose state changed with time alone (healthy → stale → gone),
        after forgetting the ones gone for good."""
        self._next_sweep = time.monotonic() + self.sweep_seconds
        now = timezone.now()
        self.forget(now)
        changed = []
        for runtime in Runtime.objects.all():
            state = runtime.state_at(now)
            if self._states.get(runtime.runtime_id) != state:
                self._states[runtime.runtime_id] = state
                changed.append(runtime)
        broadcast_runtimes(changed)
        return changed

    def forget(self, now: datetime) -> list[str]:
        """Delete the rows of runtimes silent for ``MESH_RUNTIME_FORGET_SECONDS`` and tell the open
        pages; return their ids. Every restart of a runtime is a new id, so without this the gone
        rows would pile up. A forgotten runtime that beats again is simply registered again."""
        cutoff = now - timedelta(seconds=settings.MESH_RUNTIME_FORGET_SECONDS)
        silent = Runtime.objects.filter(last_seen__lt=cutoff)
        forgotten = list(silent.values_list("runtime_id", flat=True))
        if forgotten:
            silent.filter(runtime_id__in=forgotten).delete()
            for runtime_id in forgotten:
                self._states.pop(runtime_id, None)
            log.info("forgot %d runtimes silent since before %s: %s", len(forgotten), cutoff.isoformat(),
                     ", ".join(forgotten[:10]) + (" and more" if len(forgotten) > 10 else ""))
            live.broadcast_forgotten(forgotten)
        return forgotten

    def run(self) -> None:
        log.info("ingesting heartbeats from %s as %s/%s (pid %s)", self.stream, GROUP, self.consumer, os.getpid())
        self.ensure_group()
        delay = 0.5
        while not self.stopped:
            try:
                close_old_connections()
                self.step()
                delay = 0.5
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                self.ensure_group()  # the stream was deleted (an emptied Redis): start again
            except (redis.ConnectionError, redis.TimeoutError) as error:
                log.warning("Redis unreachable (%s); retrying in %.1f s", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
