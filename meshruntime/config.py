"""The MeshConfig document: checksum, validation, publishing, and the runtime's watcher.

The contract is docs/meshconfig.md; the JSON Schema is ``schema/meshconfig-1.json`` beside this
module. This module is the single place where both sides check a document: the portal calls
:func:`seal`, :func:`validate_document` and :func:`publish_document` after compiling; a runtime
runs a :class:`ConfigWatcher`, which refuses anything :func:`validate_document` refuses.

No Django here: the portal imports this module, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import inspect
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import orjson
import redis
import redis.asyncio
from jsonschema.exceptions import best_match
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from meshruntime.filters import FilterError, validate_filters
from meshruntime.policy import PolicyError, topic_name_folded, validate_pattern
from meshruntime.schema import DATA_SCHEMA_SUBSET_PATH, MESHCONFIG_SCHEMA_PATH, compile_checker, load_schema

__all__ = [
    "FORMAT",
    "SCHEMA",
    "SCHEMA_PATH",
    "ConfigError",
    "ConfigWatcher",
    "async_redis_client",
    "cancel_and_wait",
    "canonical_json",
    "compute_checksum",
    "load_file",
    "publish_document",
    "seal",
    "validate_document",
]

log = logging.getLogger(__name__)

FORMAT = 1
SCHEMA_PATH = MESHCONFIG_SCHEMA_PATH
SCHEMA: dict[str, Any] = load_schema(SCHEMA_PATH)

# Fields that describe a publication rather than the content: the checksum leaves them out, so
# compiling an unchanged database gives the same checksum, and a rollback keeps its old one.
UNCHECKED_FIELDS = frozenset({"version", "checksum", "generated_at"})

# Compiled once: building a validator resolves every $ref, which costs more than a small check.
# Format assertions stay off (the schema uses patterns), so results do not depend on which
# optional format libraries happen to be installed.
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# jsonschema needs ~15 s for a document of 10,000 topics and 10,000 rules; this compiled check
# needs well under one, and is never more lenient (see meshruntime.schema). jsonschema keeps the
# final word, and writes the message, whenever the fast check says no.
_FAST_CHECK = compile_checker(SCHEMA)
_MAX_MESSAGE = 400


class ConfigError(ValueError):
    """A document that must not be applied. The message starts with the failing path."""


# --------------------------------------------------------------------------------------------
# Checksum


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON of ``obj``, as the contract spells it (docs/meshconfig.md, "Checksum"):
    UTF-8, keys sorted, no whitespace, as orjson writes it (a tenth of the time ``json`` takes,
    which a whole mesh's checksum feels). Raises :class:`ConfigError` for what JSON cannot carry
    exactly (an integer beyond 64 bits, a key that is not a string).
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as error:
        raise ConfigError(f"(document): not canonical JSON: {error}") from None


def compute_checksum(doc: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the document's canonical JSON without version, checksum and generated_at."""
    content = {key: value for key, value in doc.items() if key not in UNCHECKED_FIELDS}
    return hashlib.sha256(canonical_json(content)).hexdigest()


def seal(doc: Mapping[str, Any], version: int, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """A copy of ``doc`` with ``version``, ``generated_at`` (now, UTC) and its ``checksum`` set.

    The header fields come first so that a stored snapshot reads like the contract's example.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    when = (generated_at or datetime.now(UTC)).astimezone(UTC)
    body = {key: value for key, value in doc.items() if key not in UNCHECKED_FIELDS}
    body.setdefault("format", FORMAT)
    checksum = compute_checksum(body)
    return {
        "format": body.pop("format"),
        "version": version,
        "checksum": checksum,
        "generated_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **body,
    }


# --------------------------------------------------------------------------------------------
# Validation


def _path(parts: Iterable[str | int]) -> str:
    """``["topics", 3, "name"]`` -> ``topics[3].name``; the empty path is the document itself."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


@lru_cache(maxsize=16)
def _metaschema_validator(cls: type[jsonschema.protocols.Validator]) -> jsonschema.protocols.Validator:
    """What ``cls.check_schema`` builds on every call (format checks included, so that a broken
    regular expression in ``pattern`` is caught); built once per draft, it is twice as fast."""
    return cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)


# The full metaschema costs about a millisecond per schema, ten seconds for 10,000 topics on a
# runtime's first validation. Ordinary data schemas fit a strict subset of it, which compiles
# to fast code (see data-schema-subset.json); only the others pay for the metaschema.
_SUBSET_CHECK = compile_checker(load_schema(DATA_SCHEMA_SUBSET_PATH))
# The subset leaves "pattern" to a re.compile of its own, which is what jsonschema's "regex"
# format check does, unless an ECMA-262 checker (the regress package) has replaced it.
_REGEX_IS_PYTHONS = jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers["regex"][0] is getattr(
    getattr(jsonschema, "_format", None), "is_regex", None
)


def _plainly_valid(schema: Any) -> bool:
    """True only if ``schema`` is certainly a valid 2020-12 schema; False means "ask jsonschema"."""
    if not _REGEX_IS_PYTHONS or not _SUBSET_CHECK(schema):
        return False
    stack = [schema]
    while stack:  # every "pattern" string anywhere, keyword or not: compiling extra is harmless
        node = stack.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error:
                    return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


@lru_cache(maxsize=65_536)
def _schema_problem(schema_json: bytes) -> str | None:
    """Why a topic's data schema is not a valid JSON Schema, or None.

    Cached by the schema's text: the portal validates every compiled document, and from one
    version to the next almost every schema is unchanged.
    The draft is the one the schema declares in ``$schema``, 2020-12 when it declares none.
    """
    schema = json.loads(schema_json)
    if _plainly_valid(schema):
        return None
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    meta = _metaschema_validator(cls)
    if meta.is_valid(schema):
        return None
    error = best_match(meta.iter_errors(schema))
    where = _path(error.absolute_path)
    return f"not a valid JSON Schema: {error.message}" + ("" if where == "(document)" else f" at {where}")


def validate_document(doc: Any) -> dict[str, Any]:
    """Return ``doc`` if a runtime may apply it; raise :class:`ConfigError` naming the culprit.

    Order: the schema (shape, patterns, enums, ranges), then the checksum, then what a schema
    cannot say: unique names and ids, cross references, filters, topic data schemas.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"(document): must be a JSON object, got {type(doc).__name__}")
    # Only a document the fast check refuses pays for jsonschema, which then decides and says
    # why; best_match picks the most relevant of its errors.
    error = None if _FAST_CHECK(doc) else best_match(_VALIDATOR.iter_errors(doc))
    if error is not None:
        message = error.message
        if len(message) > _MAX_MESSAGE:  # jsonschema quotes the whole offending value
            message = message[: _MAX_MESSAGE - 1] + "…"
        raise ConfigError(f"{_path(error.absolute_path)}: {message}")
    expected = compute_checksum(doc)
    if doc["checksum"] != expected:
        raise ConfigError(f"checksum: {doc['checksum']} does not match the content (its checksum is {expected})")
    _check_references(doc)
    return doc


def _unique(items: list[dict[str, Any]], field: str, section: str) -> dict[str, int]:
    """Index ``items`` by ``field``; a duplicate is an error that names both places."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        value = item[field]
        if value in seen:
            raise ConfigError(f"{section}[{index}].{field}: {value!r} is already used by {section}[{seen[value]}]")
        seen[value] = index
    return seen


def _check_filters(filters: list[Any], path: str) -> None:
    try:
        validate_filters(filters, path)
    except FilterError as error:
        raise ConfigError(str(error)) from None


def _check_pattern(pattern: str, path: str) -> None:
    # The schema already has the same regular expression; asking the policy module as well keeps
    # "what is a pattern" in one place should the evaluator ever grow a rule the regex lacks.
    try:
        validate_pattern(pattern)
    except PolicyError as error:
        raise ConfigError(f"{path}: {error}") from None


def _check_references(doc: dict[str, Any]) -> None:
    stores = _unique(doc["stores"], "name", "stores")
    topics = _unique(doc["topics"], "name", "topics")
    applications = _unique(doc["applications"], "name", "applications")
    _unique(doc["access_rules"], "id", "access_rules")
    subscriptions = _unique(doc["subscriptions"], "id", "subscriptions")
    _unique(doc["routing_rules"], "id", "routing_rules")

    folded: dict[str, int] = {}
    for index, topic in enumerate(doc["topics"]):
        other = folded.setdefault(topic_name_folded(topic["name"]), index)
        if other != index:
            raise ConfigError(f"topics[{index}].name: {topic['name']!r} differs only in case from "
                              f"topics[{other}] {doc['topics'][other]['name']!r}")
        if topic["store"] not in stores:
            raise ConfigError(f"topics[{index}].store: no store named {topic['store']!r}")
        if topic["schema"] is not None:
            problem = _schema_problem(canonical_json(topic["schema"]))
            if problem:
                raise ConfigError(f"topics[{index}].schema: {problem}")

    # Runtimes find a key by its prefix, so a prefix must lead to exactly one key.
    prefixes: dict[str, str] = {}
    for index, application in enumerate(doc["applications"]):
        for key_index, key in enumerate(application["keys"]):
            path = f"applications[{index}].keys[{key_index}]"
            if key["prefix"] in prefixes:
                owner = prefixes[key["prefix"]]
                raise ConfigError(f"{path}.prefix: {key['prefix']!r} is already used by {owner}")
            prefixes[key["prefix"]] = path

    for index, rule in enumerate(doc["access_rules"]):
        path = f"access_rules[{index}]"
        principals = rule["principals"]
        for p_index, name in enumerate([] if principals == "*" else principals):
            if name != "*" and name not in applications:
                raise ConfigError(f"{path}.principals[{p_index}]: no application named {name!r}")
        _check_pattern(rule["topic"], f"{path}.topic")
        # A topic named by an exact rule need not exist: a rule may be written before its topic,
        # and a rule about a missing topic grants nothing.
        if rule["id"].startswith("sub-") and rule["id"] not in subscriptions:
            raise ConfigError(f"{path}.id: {rule['id']!r} is a subscription's grant, but no subscription has that id")

    responders: dict[str, int] = {}
    for index, subscription in enumerate(doc["subscriptions"]):
        path = f"subscriptions[{index}]"
        if subscription["topic"] not in topics:
            raise ConfigError(f"{path}.topic: no topic named {subscription['topic']!r}")
        if subscription.get("responder"):
            other = responders.setdefault(subscription["topic"], index)
            if other != index:
                first = f"subscriptions[{other}] ({doc['subscriptions'][other]['id']})"
                raise ConfigError(f"{path}.responder: topic {subscription['topic']!r} already has a responder, "
                                  f"{first}; a topic has at most one")
        if subscription["application"] not in applications:
            raise ConfigError(f"{path}.application: no application named {subscription['application']!r}")
        delivery = subscription["delivery"]
        if delivery["backoff_cap_ms"] < delivery["backoff_base_ms"]:
            raise ConfigError(
                f"{path}.delivery.backoff_cap_ms: {delivery['backoff_cap_ms']} is less than "
                f"backoff_base_ms {delivery['backoff_base_ms']}"
            )
        _check_filters(subscription["filters"], f"{path}.filters")

    for index, route in enumerate(doc["routing_rules"]):
        path = f"routing_rules[{index}]"
        _check_pattern(route["source"], f"{path}.source")
        for t_index, target in enumerate(route["targets"]):
            if target not in topics:
                raise ConfigError(f"{path}.targets[{t_index}]: no topic named {target!r}")
        _check_filters(route["filters"], f"{path}.filters")


def parse_document(data: bytes | str, *, source: str = "document") -> dict[str, Any]:
    """Parse JSON bytes and validate them; a parse error is a :class:`ConfigError` too."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"(document): {source} is not valid JSON: {error}") from None
    return validate_document(doc)


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read, parse and validate a document from a file (a runtime's cache, a fixture, a CLI)."""
    path = Path(path)
    return parse_document(path.read_bytes(), source=str(path))


# --------------------------------------------------------------------------------------------
# Publishing (the portal's push task, and tests)

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
    redis_client: redis.Redis, doc: Mapping[str, Any], prefix: str = "mesh:", *, check: bool = True,
    patch: Mapping[str, Any] | None = None,
) -> int:
    """Store ``doc`` as ``<prefix>config:<version>``, move ``<prefix>config:latest`` and announce it.

    One transaction, so the steps are atomic, and the ``latest`` pointer never moves backwards.
    ``check`` validates first, so that a bad document reaches no runtime; a caller that has just
    validated it, or a test that publishes a bad document on purpose, passes ``check=False``.
    ``patch`` (meshruntime.patch.make_patch, from the version before) goes to
    ``<prefix>config:<version>:patch``. Returns the ``latest``
    version afterwards.
    """
    if check:
        validate_document(doc)  # type: ignore[arg-type]
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"version: must be a positive integer to be published, got {version!r}")
    if patch is not None and patch["version"] != version:
        raise ConfigError(f"patch: it makes version {patch['version']}, not {version}")
    pipe = redis_client.pipeline(transaction=True)  # MULTI: all of it or nothing, in this order
    pipe.set(f"{prefix}config:{version}", orjson.dumps(doc))
    if patch is not None:
        pipe.set(f"{prefix}config:{version}:patch", orjson.dumps(patch))
    pipe.eval(_POINTER_SCRIPT, 1, f"{prefix}config:latest", str(version), f"{prefix}config")
    return int(pipe.execute()[-1])


# --------------------------------------------------------------------------------------------
# The runtime's watcher


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


# A watcher this many versions behind or less applies patches rather than the snapshot.
MAX_PATCHES = 16

# Bounds every Redis command of the watcher and the heartbeater (see async_redis_client).
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
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = "mesh:",
        cache_path: Path | None = None,
        on_apply: OnApply | None = None,
        poll_interval: float = 3.0,
        reconnect_max_delay: float = 30.0,
        freeze: bool = False,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.poll_interval = poll_interval  # read before each wait, so it may be changed live
        self.reconnect_max_delay = reconnect_max_delay
        self._on_apply = on_apply
        self.freeze = freeze
        self._current: dict[str, Any] | None = None
        self._applied: Any = None  # meshruntime.patch.Applied of _current: what a patch applies to
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
                    await pubsub.subscribe(f"{self.prefix}config")
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
                raw = await self._redis.get(f"{self.prefix}config:latest")
            self.checks += 1
            if raw is None:
                return False
            try:
                latest = int(raw)
            except ValueError:
                await self._refuse(None, f"{self.prefix}config:latest holds {raw[:40]!r}, not a version number")
                return False
            current = self.version
            # Forward only: an older ``latest`` (a Redis restored from an old backup) is ignored.
            if current is not None and latest <= current:
                return False
            refused = self._refused.get(latest)
            if refused is not None and time.monotonic() < refused[0]:
                return False
            if current is not None and latest - current <= MAX_PATCHES and await self._apply_patches(current, latest):
                return True
            async with asyncio.timeout(COMMAND_TIMEOUT):
                data = await self._redis.get(f"{self.prefix}config:{latest}")
            return await self._apply_snapshot(latest, data)

    # -- applying -------------------------------------------------------------------------------

    async def _apply_patches(self, current: int, latest: int) -> bool:
        """Apply the patches from ``current`` to ``latest``; False (and nothing changed) if one
        is missing or does not apply, so that the caller fetches the snapshot."""
        from meshruntime.patch import PatchError, apply_patches

        assert self._redis is not None
        keys = [f"{self.prefix}config:{version}:patch" for version in range(current + 1, latest + 1)]
        async with asyncio.timeout(COMMAND_TIMEOUT):
            datas = await self._redis.mget(keys)
        if any(data is None for data in datas):
            return False
        try:
            applied = await asyncio.to_thread(apply_patches, self._applied, [orjson.loads(data) for data in datas])
        except (PatchError, ConfigError, orjson.JSONDecodeError) as error:
            # The snapshot decides: it is checked whole, and refused with a message if bad.
            log.warning("config patches %s..%s not applied (%s); fetching the snapshot", current + 1, latest, error)
            return False
        if not await self._hand_over(applied, latest):
            return False
        await self._cache(latest, None)
        await self._notify()
        return True

    async def _apply_snapshot(self, version: int, data: bytes | None) -> bool:
        if data is None:
            await self._refuse(version, f"{self.prefix}config:{version} does not exist", retry=True)
            return False
        try:
            # Validating 10,000 topics takes a while; off the event loop, deliveries go on.
            applied = await asyncio.to_thread(_prepared, parse_document, data, source=f"{self.prefix}config:{version}")
            if applied.document["version"] != version:
                raise ConfigError(f"version: {self.prefix}config:{version} holds version "
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

    async def _hand_over(self, applied: Any, version: int) -> bool:
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
            applied = await asyncio.to_thread(_prepared, load_file, path)
        except (ConfigError, OSError) as error:
            self._last_error = f"cached config {path} not used: {error}"
            log.error("%s", self._last_error)
            return
        if await self._hand_over(applied, applied.document["version"]):
            log.info("started from cached config version %s in %s", applied.document["version"], path)
            await self._notify()


def _prepared(load: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
    """``load(...)``'s validated document, ready for patches (in a worker thread, with it)."""
    from meshruntime.patch import Applied

    return Applied.of(load(*args, **kwargs))
