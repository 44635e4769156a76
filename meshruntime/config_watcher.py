"""The runtime's ConfigWatcher: follow Redis to the newest valid MeshConfig, keep the last one.

The document's rules are :mod:`meshruntime.config`'s, the patches' :mod:`meshruntime.patch`'s;
this module fetches, hands over, caches, and waits out outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis
import redis.asyncio

from meshruntime.background import COMMAND_TIMEOUT, async_redis_client, cancel_and_wait
from meshruntime.config import DEFAULT_MAX_DOCUMENT_BYTES, ConfigError, load_file, parse_document
from meshruntime.keys import DEFAULT_PREFIX, KeySpace
from meshruntime.patch import Applied, PatchError, apply_patches

__all__ = ["MAX_PATCHES", "ConfigWatcher", "OnApply"]

log = logging.getLogger(__name__)

# A watcher this many versions behind or less applies patches rather than the snapshot.
MAX_PATCHES = 16


def _redacted(url: str) -> str:
    """The URL without credentials, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


OnApply = Callable[[dict[str, Any]], Awaitable[None] | None]

# Connection problems worth waiting out; anything else is a bug and should surface.
_REDIS_DOWN = (redis.RedisError, OSError)


class ConfigWatcher:
    """Keeps a runtime on the newest valid MeshConfig, and on its last one when Redis is away.

    ``start()`` applies the cached document first (if any), then follows Redis in the
    background: the ``<prefix>config`` channel says a version exists, and polling
    ``<prefix>config:latest`` every ``poll_interval`` seconds catches any missed message.
    A newer version is fetched, validated, handed to ``on_apply`` and only then made current
    and written to the cache. A document that fails validation, or that ``on_apply`` rejects by
    raising, is refused: the previous one stays, ``last_error`` says why. ``on_apply`` must
    therefore build the runtime's new state completely before swapping it in.

    ``freeze``: a process that holds its documents for long (a runtime) lets the watcher take
    each applied snapshot out of the cyclic garbage collector's reach (``gc.freeze``).

    A version refused for its content is never fetched again (a version's content never
    changes; the portal publishes a fix as a new version). A version ``on_apply`` failed on,
    or whose snapshot was missing, is retried after a growing delay, since the cause may pass.

    ``max_document_bytes``: a snapshot (or the patches to a version) longer than this is refused
    by its length (``STRLEN``), unread. What is read is parsed and checked in a worker thread,
    so that the event loop goes on serving meanwhile; only the JSON parse itself holds the
    interpreter lock throughout, a pause that the limit bounds.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        cache_path: Path | None = None,
        on_apply: OnApply | None = None,
        poll_interval: float = 3.0,
        reconnect_max_delay: float = 30.0,
        freeze: bool = False,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.poll_interval = poll_interval  # read before each wait, so it may be changed live
        self.reconnect_max_delay = reconnect_max_delay
        self._on_apply = on_apply
        self.freeze = freeze
        self.max_document_bytes = max_document_bytes
        self._current: dict[str, Any] | None = None
        self._applied: Applied | None = None  # what a patch applies to: _current, with its canonical bytes
        self._last_error: str | None = None
        # version -> (monotonic time before which it is not fetched again, failed attempts)
        self._refused: dict[int, tuple[float, int]] = {}
        self._redis: redis.asyncio.Redis | None = None
        self._redis_down = False
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._sync_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        self._behind: int | None = None  # a ``latest`` below the version held, once logged
        # How many times ``latest`` was read: lets tests and diagnostics see that polling runs.
        self.checks = 0

    # -- state ----------------------------------------------------------------------------------

    @property
    def current(self) -> dict[str, Any] | None:
        """The applied document; replaced as a whole, never mutated, so readers need no lock."""
        return self._current

    @property
    def version(self) -> int | None:
        return None if self._current is None else self._current["version"]

    @property
    def checksum(self) -> str | None:
        return None if self._current is None else self._current["checksum"]

    @property
    def last_error(self) -> str | None:
        """Why the newest refused document (or the cache) was not applied; None after a success."""
        return self._last_error

    @property
    def redis_reachable(self) -> bool:
        """False from a failed Redis command or subscription until the next one that succeeds."""
        return self._redis is not None and not self._redis_down

    @property
    def subscribed(self) -> bool:
        """Whether the watcher listens on ``<prefix>config`` right now."""
        return self._subscribed

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever a document is applied or refused."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for_version(self, version: int | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Wait until a document (of at least ``version``, if given) is applied; return it."""
        await self.wait_until(
            lambda: self._current is not None and (version is None or self._current["version"] >= version),
            timeout,
        )
        assert self._current is not None
        return self._current

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Apply the cache, then follow Redis in the background. Returns without waiting for Redis."""
        if self._tasks:
            raise RuntimeError("this ConfigWatcher is already started")
        if self.cache_path is not None and self.cache_path.exists():
            await self._apply_cache(self.cache_path)
        self._redis = async_redis_client(self.redis_url, health_check_interval=15)
        self._tasks = [
            asyncio.create_task(self._listen(), name="config-watcher-listen"),
            asyncio.create_task(self._poll(), name="config-watcher-poll"),
        ]

    async def stop(self) -> None:
        """Cancel the background tasks and close the connections; the current document stays."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def __aenter__(self) -> ConfigWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- background tasks -----------------------------------------------------------------------

    def _mark_redis(self, error: BaseException | None) -> None:
        """Log an outage once when it starts and once when it ends, not on every attempt."""
        if error is not None and not self._redis_down:
            self._redis_down = True
            log.warning(
                "Redis unreachable at %s (%s); keeping config version %s and retrying",
                _redacted(self.redis_url),
                str(error) or type(error).__name__,  # a timeout has no message of its own
                self.version,
            )
        elif error is None and self._redis_down:
            self._redis_down = False
            log.info("Redis reachable again at %s", _redacted(self.redis_url))

    async def _listen(self) -> None:
        """Turn ``<prefix>config`` messages into wake-ups of the poller; reconnect with backoff."""
        assert self._redis is not None
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT):
                    await pubsub.subscribe(self.keys.config_channel)
                self._mark_redis(None)
                self._subscribed = True
                delay = 0.1
                # Anything published while we were not subscribed was missed: look now.
                self._wake.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None and message["type"] == "message":
                        self._wake.set()
            except _REDIS_DOWN as error:
                self._mark_redis(error)
            except Exception:
                # A bug, not an outage: say so loudly; polling still keeps the runtime current.
                log.exception("config channel listener failed; resubscribing")
            finally:
                self._subscribed = False
                with contextlib.suppress(*_REDIS_DOWN):
                    await pubsub.aclose()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _poll(self) -> None:
        """Check ``latest`` when woken by a message, and every ``poll_interval`` regardless."""
        while True:
            self._wake.clear()
            try:
                await self.sync()
                self._mark_redis(None)
            except _REDIS_DOWN as error:
                self._mark_redis(error)
            except Exception as error:
                # A bug, not an outage. Reported where the portal shows it (the heartbeat's
                # error) rather than letting the poller die silently; retried next interval.
                log.exception("config check failed")
                self._last_error = f"config check failed: {error!r}"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def sync(self) -> bool:
        """Look at ``latest`` once and apply it if it is newer; True if a document was applied.

        From the version held, the patches up to ``latest`` when they are all there and apply
        cleanly (meshruntime.patch); else, and for a first document, the snapshot of ``latest``.
        Raises Redis errors: the background poller treats them as an outage.
        """
        if self._redis is None:
            raise RuntimeError("start() the ConfigWatcher first")
        async with self._sync_lock:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                raw = await self._redis.get(self.keys.config_latest)
            self.checks += 1
            if raw is None:
                return False
            try:
                latest = int(raw)
            except ValueError:
                await self._refuse(None, f"{self.keys.config_latest} holds {raw[:40]!r}, not a version number")
                return False
            current = self.version
            # Forward only: an older ``latest`` (a Redis restored from an old backup) is ignored,
            # and said once: the portal's next push announces a version above both.
            if current is not None and latest <= current:
                if latest < current and latest != self._behind:
                    log.warning("%s announces version %s, below version %s held here (a Redis restored from "
                                "an older backup?); keeping version %s until a newer one is announced",
                                self.keys.config_latest, latest, current, current)
                self._behind = latest if latest < current else None
                return False
            self._behind = None
            refused = self._refused.get(latest)
            if refused is not None and time.monotonic() < refused[0]:
                return False
            if current is not None and latest - current <= MAX_PATCHES and await self._apply_patches(current, latest):
                return True
            return await self._apply_snapshot(latest)

    # -- applying -------------------------------------------------------------------------------

    async def _apply_patches(self, current: int, latest: int) -> bool:
        """Apply the patches from ``current`` to ``latest``; False (and nothing changed) if one
        is missing or does not apply, so that the caller fetches the snapshot."""
        assert self._redis is not None
        keys = [self.keys.config_patch(version) for version in range(current + 1, latest + 1)]
        async with asyncio.timeout(COMMAND_TIMEOUT):
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.strlen(key)
            sizes = await pipe.execute()
        if 0 in sizes:
            return False  # missing (or empty, which is not a patch either)
        if sum(sizes) > self.max_document_bytes:
            log.warning("config patches %s..%s not read: %d bytes, over this runtime's limit of %d; "
                        "fetching the snapshot", current + 1, latest, sum(sizes), self.max_document_bytes)
            return False
        async with asyncio.timeout(COMMAND_TIMEOUT):
            datas = await self._redis.mget(keys)
        if any(data is None for data in datas):
            return False
        try:
            applied = await asyncio.to_thread(_patched, self._applied, datas)
        except (PatchError, ConfigError, orjson.JSONDecodeError) as error:
            # The snapshot decides: it is checked whole, and refused with a message if bad.
            log.warning("config patches %s..%s not applied (%s); fetching the snapshot", current + 1, latest, error)
            return False
        if not await self._hand_over(applied, latest):
            return False
        await self._cache(latest, None)
        await self._notify()
        return True

    async def _apply_snapshot(self, version: int) -> bool:
        """Fetch snapshot ``version`` unless it is over the size limit, check it, apply it."""
        assert self._redis is not None
        key = self.keys.config(version)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                size = await self._redis.strlen(key)
            if size > self.max_document_bytes:
                await self._refuse(version, f"{key} is {size} bytes, over this runtime's limit of "
                                            f"{self.max_document_bytes} (--max-config-bytes)")
                return False
            async with asyncio.timeout(COMMAND_TIMEOUT):
                data = await self._redis.get(key)
        except redis.ResponseError as error:  # not a string: a broken key, not an outage
            await self._refuse(version, f"{key} is not a document: {error}")
            return False
        if data is None:
            await self._refuse(version, f"{key} does not exist", retry=True)
            return False
        if len(data) > self.max_document_bytes:  # replaced between the two commands
            await self._refuse(version, f"{key} is {len(data)} bytes, over this runtime's limit of "
                                        f"{self.max_document_bytes} (--max-config-bytes)")
            return False
        try:
            # Validating 10,000 topics takes a while; off the event loop, deliveries go on.
            applied = await asyncio.to_thread(_prepared, parse_document, data, source=self.keys.config(version))
            if applied.document["version"] != version:
                raise ConfigError(f"version: {self.keys.config(version)} holds version "
                                  f"{applied.document['version']}")
        except ConfigError as error:
            await self._refuse(version, str(error))
            return False
        if not await self._hand_over(applied, version):
            return False
        if self.freeze:
            # A whole document is some 250,000 objects at 10,000 topics and rules, alive until
            # the next snapshot (patches replace a few of them); every full collection would
            # scan them again, a pause of tens of milliseconds. Frozen, collections skip them,
            # and what a later version drops is still freed (the document has no cycles).
            gc.freeze()
        await self._cache(version, data)
        await self._notify()
        return True

    async def _cache(self, version: int, data: bytes | None) -> None:
        """Write the current document to the cache file (``data``: its snapshot's bytes, if read)."""
        if self.cache_path is None:
            return
        try:
            await asyncio.to_thread(_write_atomically, self.cache_path, data or orjson.dumps(self._current))
        except OSError as error:
            # Applied all the same: the cache only matters for the next start without Redis.
            self._last_error = f"config version {version} applied but not cached in {self.cache_path}: {error}"
            log.error("%s", self._last_error)

    async def _hand_over(self, applied: Applied, version: int) -> bool:
        """Give the document to ``on_apply`` and make it current if that succeeds."""
        doc = applied.document
        try:
            if self._on_apply is not None:
                result = self._on_apply(doc)
                if inspect.isawaitable(result):
                    await result
        except Exception as error:
            log.exception("on_apply failed for config version %s", version)
            await self._refuse(version, f"the runtime could not apply it: {error!r}", retry=True)
            return False
        previous = self.version
        self._current, self._applied = doc, applied
        self._last_error = None
        self._refused = {key: value for key, value in self._refused.items() if key > version}
        log.info("applied config version %s (checksum %s; previous %s)", version, doc["checksum"][:12], previous)
        return True

    async def _refuse(self, version: int | None, cause: str, *, retry: bool = False) -> None:
        """Keep the current document, record why ``version`` (None: the pointer) was not applied."""
        keeping = "none" if self.version is None else self.version
        what = "config pointer" if version is None else f"config version {version}"
        message = f"{what} refused: {cause}; keeping version {keeping}"
        if version is not None:
            attempts = self._refused.get(version, (0.0, 0))[1] + 1
            delay = min(max(self.poll_interval, 1.0) * 2**attempts, 600.0) if retry else float("inf")
            self._refused[version] = (time.monotonic() + delay, attempts)
        if message != self._last_error:  # a pointer that stays bad is logged once, not every poll
            log.error("%s", message)
        self._last_error = message
        await self._notify()

    async def _apply_cache(self, path: Path) -> None:
        try:
            applied = await asyncio.to_thread(_prepared, load_file, path, max_bytes=self.max_document_bytes)
        except (ConfigError, OSError) as error:
            self._last_error = f"cached config {path} not used: {error}"
            log.error("%s", self._last_error)
            return
        if await self._hand_over(applied, applied.document["version"]):
            log.info("started from cached config version %s in %s", applied.document["version"], path)
            await self._notify()


def _prepared(load: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> Applied:
    """``load(...)``'s validated document, ready for patches (in a worker thread, with it)."""
    return Applied.of(load(*args, **kwargs))


def _patched(applied: Applied | None, datas: list[bytes]) -> Applied:
    """The patches' JSON parsed and applied to ``applied`` (in a worker thread)."""
    if applied is None:
        raise PatchError("no version held to apply patches to")
    return apply_patches(applied, [orjson.loads(data) for data in datas])
