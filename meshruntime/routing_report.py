"""Copies that routing rules could not make, told to the portal.

A routing rule copies an event into its targets; a target with a schema takes only a copy whose
data passes that schema, as a publish there would. A copy that fails is not made: the event itself
was the producer's to publish and is stored, the copy is dropped, counted
(``meshruntime_routed_copies_refused_total{rule,target,reason}``), recorded as a ``copy_refused``
step of the event's journey (with the schema path), and reported here, so that the routing
rule's page in the portal shows it as a finding.

The report is one hash per rule, ``<prefix>routing:<rule id>`` (:class:`~meshruntime.keys.KeySpace`),
summed over the runtimes and kept a week after the last refusal:

- ``refused`` (total) and ``refused:<target>:<reason>`` (per target and reason): counts;
- ``last_at`` (epoch ms), ``last_event_id``, ``last_source``, ``last_target``, ``last_reason``,
  ``last_path`` (``data.amount``) and ``last_keyword`` (the schema keyword that failed, ``type``):
  the latest refusal, in words that quote nothing of the event's data (the journey step has
  the schema's message, which may, and is shown only to those who may see the payload).

Written off the publish path: refusals gather for ``interval`` (a second) and go in one pipeline;
a write that fails is carried by the next (best effort: the metric is the exact count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .keys import KeySpace

log = logging.getLogger(__name__)

__all__ = ["REPORT_TTL_SECONDS", "RefusedCopy", "RoutingReport", "RuleReport", "read_reports"]

#: A rule's report is forgotten this long after its last refused copy.
REPORT_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class RefusedCopy:
    """One copy a routing rule did not make, and why."""

    rule: str
    source: str
    target: str
    reason: str  # "schema_mismatch"
    path: str  # where the data fails the target's schema: "data.amount"
    keyword: str  # the failing schema keyword: "type", "required"
    message: str  # the schema's message (may quote the data: journeys only)
    event_id: str


@dataclass(slots=True)
class _Pending:
    counts: dict[tuple[str, str], int]  # (target, reason) -> copies
    last: RefusedCopy
    at_ms: int


class RoutingReport:
    """Gathers refused copies and writes them, per rule, to the mesh's Redis every ``interval`` s."""

    def __init__(self, client: aioredis.Redis, prefix: str, *, interval: float = 1.0) -> None:
        self.client = client
        self.keys = KeySpace(prefix)
        self.interval = interval
        self._pending: dict[str, _Pending] = {}
        self._flush: asyncio.Task | None = None
        self._closing = asyncio.Event()  # cuts the wait short (not cancel(): see delivery/worker.py)

    def add(self, copy: RefusedCopy) -> None:
        """Note one refused copy; written with the others within ``interval``."""
        at_ms = int(time.time() * 1000)
        pending = self._pending.get(copy.rule)
        if pending is None:
            pending = self._pending[copy.rule] = _Pending({}, copy, at_ms)
        key = (copy.target, copy.reason)
        pending.counts[key] = pending.counts.get(key, 0) + 1
        pending.last, pending.at_ms = copy, at_ms
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._write_soon())

    async def _write_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.interval)
        await self.write()

    async def write(self) -> None:
        """Write what has gathered now (also what :meth:`close` does)."""
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        pipe = self.client.pipeline(transaction=False)
        for rule, pending in taken.items():
            key = self.keys.routing(rule)
            for (target, reason), count in pending.counts.items():
                pipe.hincrby(key, f"refused:{target}:{reason}", count)
                pipe.hincrby(key, "refused", count)
            last = pending.last
            pipe.hset(key, mapping={
                "last_at": pending.at_ms, "last_event_id": last.event_id, "last_source": last.source,
                "last_target": last.target, "last_reason": last.reason, "last_path": last.path,
                "last_keyword": last.keyword})
            pipe.expire(key, REPORT_TTL_SECONDS)
        try:
            await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("refused routed copies not reported (the next report carries them): %s", error)
            for rule, pending in taken.items():  # put back under what gathered meanwhile
                newer = self._pending.get(rule)
                if newer is None:
                    self._pending[rule] = pending
                else:
                    for key, count in pending.counts.items():
                        newer.counts[key] = newer.counts.get(key, 0) + count

    async def close(self) -> None:
        """Write what is left (the runtime stops)."""
        self._closing.set()
        if self._flush is not None:
            await asyncio.gather(self._flush, return_exceptions=True)
        await self.write()


# -- the portal's side: reading the reports -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleReport:
    """What the runtimes reported about one routing rule's refused copies (summed over them)."""

    refused: int
    by_target: dict[tuple[str, str], int]  # (target, reason) -> copies
    last_at_ms: int | None
    last_event_id: str
    last_source: str
    last_target: str
    last_reason: str
    last_path: str
    last_keyword: str


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_reports(client, prefix: str, rule_ids: list[str]) -> dict[str, RuleReport]:
    """The reports of ``rule_ids`` that have any, in one round trip (``client``: a synchronous
    redis-py client of the mesh's Redis). Raises the client's errors."""
    if not rule_ids:
        return {}
    keys = KeySpace(prefix)
    pipe = client.pipeline(transaction=False)
    for rule_id in rule_ids:
        pipe.hgetall(keys.routing(rule_id))
    reports = {}
    for rule_id, raw in zip(rule_ids, pipe.execute(), strict=True):
        if not raw:
            continue
        fields = {_text(k): _text(v) for k, v in raw.items()}
        by_target = {}
        for name, value in fields.items():
            if name.startswith("refused:") and value.lstrip("-").isdigit():
                target, _, reason = name[len("refused:"):].rpartition(":")
                by_target[(target, reason)] = int(value)
        at = fields.get("last_at", "")
        reports[rule_id] = RuleReport(
            refused=int(fields["refused"]) if fields.get("refused", "").isdigit() else sum(by_target.values()),
            by_target=by_target, last_at_ms=int(at) if at.isdigit() else None,
            last_event_id=fields.get("last_event_id", ""), last_source=fields.get("last_source", ""),
            last_target=fields.get("last_target", ""), last_reason=fields.get("last_reason", ""),
            last_path=fields.get("last_path", ""), last_keyword=fields.get("last_keyword", ""))
    return reports
