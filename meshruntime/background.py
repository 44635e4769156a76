"""What the runtime's background work against Redis shares: its client, and how it stops.

The config watcher and the heartbeater both follow Redis from background tasks that must
survive outages and stop promptly when cancelled; these are the two pieces that make that so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["COMMAND_TIMEOUT", "async_redis_client", "cancel_and_wait"]

# Bounds every Redis command of the config watcher and the heartbeater (see async_redis_client).
COMMAND_TIMEOUT = 10.0


def async_redis_client(url: str, **kwargs: Any) -> redis.asyncio.Redis:
    """An asyncio Redis client for the runtime's background work.

    No ``socket_timeout``: with it, redis-py wraps every send in ``asyncio.wait_for``, and on
    Python 3.11 ``wait_for`` swallows a cancellation that arrives as the send completes, so a
    task could not be stopped (seen here: a GET loop kept running after ``cancel()``). Callers
    bound each command with ``asyncio.timeout(COMMAND_TIMEOUT)`` instead, which does not.
    One immediate retry covers a pooled connection that died with a Redis restart; longer
    outages are the caller's business (backoff, logging once), not the client's.
    """
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=2.0, socket_timeout=None, retry=Retry(NoBackoff(), 1), **kwargs
    )


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again any that swallowed it
    (a library's ``asyncio.wait_for`` on Python 3.11 can)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
