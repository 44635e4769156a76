"""A Redis stream's consumer groups and their lag, read the same way by the runtime and the portal.

A group's lag (entries not yet delivered to it) is what an operator looks at first. Redis 7
reports it in ``XINFO GROUPS`` (not always: after some deletions it says it does not know);
Redis 6.2, the embedded server, never does. Then the entries after the group's last delivered
id are counted, up to :data:`LAG_SCAN_CAP`: beyond that the figure is reported as unknown
rather than paid for.

The whole reading is one Lua script, so that the runtime's asyncio client (the store) and the
portal's synchronous one (:mod:`meshruntime.delivery_admin`) run the very same thing, and only
the count crosses the network, not the entries counted. Putting dead letters back
(:data:`REDELIVER_SCRIPT`) is shared the same way. Pure: the callers run the scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["GROUPS_SCRIPT", "LAG_SCAN_CAP", "REDELIVER_SCRIPT", "ConsumerGroup", "parse_groups"]

LAG_SCAN_CAP = 10_000

# KEYS[1]: the stream. ARGV[1]: LAG_SCAN_CAP. One row per group: name, consumers, pending, last
# delivered id, lag (-1: unknown). XINFO's own error (no such key, wrong type) is answered as is,
# so callers see the error they would see calling XINFO GROUPS themselves.
GROUPS_SCRIPT = """
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if groups.err then return groups end
local cap = tonumber(ARGV[1])
local out = {}
for i, fields in ipairs(groups) do
  local group = {}
  for j = 1, #fields, 2 do group[fields[j]] = fields[j + 1] end
  local lag = group['lag']
  if not lag then
    lag = #redis.call('XRANGE', KEYS[1], '(' .. group['last-delivered-id'], '+', 'COUNT', cap + 1)
    if lag > cap then lag = -1 end
  end
  out[i] = {group['name'], group['consumers'], group['pending'], group['last-delivered-id'], lag}
end
return out
"""


class ConsumerGroup(NamedTuple):
    """One row of :data:`GROUPS_SCRIPT`'s answer."""

    name: str
    consumers: int
    pending: int  # delivered, not yet acknowledged
    last_delivered_id: str
    lag: int | None  # None: more than LAG_SCAN_CAP, or unknown


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_groups(reply: Sequence[Sequence[Any]]) -> list[ConsumerGroup]:
    """The groups in :data:`GROUPS_SCRIPT`'s answer (as redis-py returns it, bytes or str)."""
    return [
        ConsumerGroup(_s(name), int(consumers), int(pending), _s(last), None if int(lag) < 0 else int(lag))
        for name, consumers, pending, last, lag in reply
    ]


# KEYS: dlq, redeliver. ARGV: by, id... Returns how many were put back (a missing id is skipped).
# One script per batch: two operators pressing "redeliver all" at once put each event back once.
REDELIVER_SCRIPT = """
local moved = 0
for i = 2, #ARGV do
  local rows = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #rows > 0 then
    local fields = rows[1][2]
    local event = nil
    for j = 1, #fields, 2 do
      if fields[j] == 'event' then event = fields[j + 1] end
    end
    if event then
      redis.call('XADD', KEYS[2], '*', 'event', event, 'dlq_id', ARGV[i], 'by', ARGV[1])
    end
    redis.call('XDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
"""
