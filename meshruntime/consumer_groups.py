"""A Redis stream's consumer groups and their lag, read the same way by the runtime and the portal.

A group's lag (entries not yet delivered to it) is what an operator looks at first. Redis 7
reports it in ``XINFO GROUPS`` (not always: after some deletions it says it does not know);
Redis 6.2, the embedded server, never does. Then the entries after the group's last delivered
id are counted, up to :data:`LAG_SCAN_CAP`: beyond that the figure is reported as unknown
rather than paid for.

The whole reading is one Lua script, so that the runtime's asyncio client (the store) and the
portal's synchronous one (:mod:`meshruntime.delivery_admin`) run the very same thing, and only
the count crosses the network, not the entries counted. Pure: the callers run the script.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["GROUPS_SCRIPT", "LAG_SCAN_CAP", "ConsumerGroup", "parse_groups"]

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
