"""The portal's Redis: one client, and the name of every key the rollout reads or writes.

Two families share the key prefix (``MESH_KEY_PREFIX``, ``mesh:`` by default, so that tests and
several meshes can share one Redis):

- the contract's, which runtimes read and write too (docs/architecture.md, "Redis key space"):
  ``config:<version>``, ``config:<version>:patch``, ``config:latest`` and the ``runtimes``
  heartbeat stream;
- the portal's own, for the push protocol (rollout.push): ``push:pending``, ``push:recent``,
  ``push:lock``, ``push:changes`` and ``push:status``.

Nothing else in the portal spells a key: everyone calls these functions.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=30)


def client() -> redis.Redis:
    """The client of ``REDIS_URL`` (one connection pool per process)."""
    return _client_for(settings.REDIS_URL)


def prefix() -> str:
    return settings.MESH_KEY_PREFIX


def key(name: str) -> str:
    return f"{prefix()}{name}"


# The contract's keys


def config(version: int) -> str:
    """The snapshot of one version."""
    return key(f"config:{version}")


def config_patch(version: int) -> str:
    """The patch from the version before to ``version`` (meshruntime.patch)."""
    return key(f"config:{version}:patch")


def config_latest() -> str:
    """The number of the newest published version."""
    return key("config:latest")


def runtimes_stream() -> str:
    """The heartbeats of every runtime (rollout.registry reads it)."""
    return key("runtimes")


# The portal's own keys (rollout.capture and rollout.push explain the protocol)


def push_pending() -> str:
    """A push task is on its way (SET NX with expiry)."""
    return key("push:pending")


def push_recent() -> str:
    """A version was published within the burst window."""
    return key("push:recent")


def push_lock() -> str:
    """Held by the push that runs."""
    return key("push:lock")


def push_changes() -> str:
    """The committed changes waiting for the next version: a capped list of JSON records."""
    return key("push:changes")


def push_status() -> str:
    """The outcome of the last push, shown on the config versions page."""
    return key("push:status")
