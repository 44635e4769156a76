"""The portal's Redis: one client, and the mesh's key space under the configured prefix.

Every name the rollout reads or writes comes from :class:`meshruntime.keys.KeySpace` (the one
owner of the key space, shared with the runtimes): the contract's ``config:*`` and ``runtimes``
keys, and the portal's own push bookkeeping ``push:*`` (rollout.capture and rollout.push explain
that protocol). The prefix is ``MESH_KEY_PREFIX`` (``mesh:`` by default), so tests and several
meshes can share one Redis.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings

from meshruntime.keys import KeySpace


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=30)


def client() -> redis.Redis:
    """The client of ``REDIS_URL`` (one connection pool per process)."""
    return _client_for(settings.REDIS_URL)


def prefix() -> str:
    return settings.MESH_KEY_PREFIX


@lru_cache(maxsize=4)
def _keys_for(prefix: str) -> KeySpace:
    return KeySpace(prefix)


def keys() -> KeySpace:
    """The key space under ``MESH_KEY_PREFIX`` (read each time: tests change the setting)."""
    return _keys_for(prefix())
