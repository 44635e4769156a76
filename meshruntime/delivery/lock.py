"""One deliverer at a time for an ordered subscription (max in flight 1), across runtimes.

Several runtimes of one application share a subscription's consumer group; each would take the
next event while the others are busy with theirs, and order would be lost. So for an ordered
subscription the runtimes take turns by lease: ``<prefix>delivery:<subscription id>:lock`` holds
the runtime id, expires after the visibility timeout, and is renewed by its holder every third
of it. The others stand by; when the holder dies, one of them takes the lease once it expires,
and then takes over the holder's pending events (idle as long by then), oldest first.
"""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from meshruntime.store import StoreError

__all__ = ["OrderLock"]

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class OrderLock:
    def __init__(self, client: aioredis.Redis, key: str, owner: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.held = False

    async def refresh(self) -> bool:
        """Renew the lease if held, else try to take it; returns whether it is held now."""
        try:
            if self.held:
                self.held = bool(await self.client.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))
            if not self.held:
                self.held = bool(await self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))
        except RedisError as error:
            raise StoreError(f"order lock: {error}") from error
        return self.held

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(RedisError):  # else it expires by itself
            await self.client.eval(_RELEASE, 1, self.key, self.owner)
