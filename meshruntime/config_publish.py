"""Publishing a sealed MeshConfig to Redis: the portal's push task (and tests) call this.

Synchronous (redis-py), so that a Celery worker publishes without an event loop; it needs only
the document module and the key space, never the runtime's watcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import redis

from meshruntime.config import ConfigError, validate_document
from meshruntime.keys import DEFAULT_PREFIX, KeySpace

__all__ = ["publish_document"]

# The pointer only moves forward: two push tasks finishing out of order must not send
# ``latest`` back to an older version (a runtime would ignore it, but a runtime starting afresh
# would begin from the older one). The version is always announced, so re-publishing the current
# version is a harmless "push again". The snapshot (and the patch) are written by plain SETs in
# the same MULTI: a megabytes-long script argument costs Redis a copy into Lua (4 MB: 20 ms).
_POINTER_SCRIPT = """
local latest = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local version = tonumber(ARGV[1])
if version > latest then
  redis.call('SET', KEYS[1], ARGV[1])
  latest = version
end
redis.call('PUBLISH', ARGV[2], ARGV[1])
return latest
"""


def publish_document(
    redis_client: redis.Redis, doc: Mapping[str, Any], prefix: str = DEFAULT_PREFIX, *, check: bool = True,
    patch: Mapping[str, Any] | None = None,
) -> int:
    """Store ``doc`` as ``<prefix>config:<version>``, move ``<prefix>config:latest`` and announce it.

    One transaction, so the steps are atomic, and the ``latest`` pointer never moves backwards.
    ``check`` validates first, so that a bad document reaches no runtime; a caller that has just
    validated it, or a test that publishes a bad document on purpose, passes ``check=False``.
    ``patch`` (meshruntime.patch.make_patch, from the version before) goes to
    ``<prefix>config:<version>:patch``; without one, a patch left under that name (by an earlier
    history of the numbers) is deleted, so that only the snapshot speaks for the version.
    Returns the ``latest`` version afterwards.
    """
    if check:
        validate_document(doc)  # type: ignore[arg-type]
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"version: must be a positive integer to be published, got {version!r}")
    if patch is not None and patch["version"] != version:
        raise ConfigError(f"patch: it makes version {patch['version']}, not {version}")
    keys = KeySpace(prefix)
    pipe = redis_client.pipeline(transaction=True)  # MULTI: all of it or nothing, in this order
    pipe.set(keys.config(version), orjson.dumps(doc))
    if patch is not None:
        pipe.set(keys.config_patch(version), orjson.dumps(patch))
    else:
        pipe.delete(keys.config_patch(version))
    pipe.eval(_POINTER_SCRIPT, 1, keys.config_latest, str(version), keys.config_channel)
    return int(pipe.execute()[-1])
