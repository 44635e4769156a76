"""The mesh's Redis key space: every key, stream and channel name, built in one place.

The portal and the runtimes meet in Redis, so a name spelled differently on one side is an
outage that no test of either side alone sees. Every name is therefore built here, from the
configurable prefix (``MESH_KEY_PREFIX`` / ``--prefix``, default ``mesh:``), and nowhere else;
``tests/test_key_space.py`` fails on a key spelled outside this module. Pure: no I/O.

With the default prefix (docs/meshconfig.md, "Redis keys", says what each one holds):

- ``mesh:config:<version>``, ``mesh:config:<version>:patch``, ``mesh:config:latest`` and the
  channel ``mesh:config``: the push task publishes, runtimes follow;
- ``mesh:runtimes``: the heartbeat stream, runtimes → portal;
- channel ``mesh:tap:<topic>`` and ``mesh:tap:watch:<topic>``: the live tap, sent while the
  portal keeps the watch key alive;
- channels ``mesh:refusals``, ``mesh:refusals:topic:<topic>``, ``mesh:refusals:application:<app>``
  and their watch keys ``mesh:refusals:watch[:topic:<topic>|:application:<app>]``: refused
  publishes, tapped like events, per scope, while the portal keeps the scope's watch key alive;
- ``mesh:journey:<event id>``: the steps of one event, runtimes → portal;
- ``mesh:topic:<name>`` streams, ``mesh:dlq:<subscription>`` and
  ``mesh:redeliver:<subscription>``: the Redis Streams event store, dead letters, and the dead
  letters an operator put back;
- ``mesh:delivery:<subscription>`` (status), ``…:m:<epoch minute>`` (rate) and ``…:lock``
  (the lease of ordered delivery): runtimes write, the portal's subscription page reads;
- ``mesh:routing:<rule>``: the copies a routing rule could not make (their data fails the
  target's schema), runtimes → the portal's routing rule page;
- ``mesh:push:pending|recent|lock|changes|status|stats``: the portal's own push bookkeeping;
- ``mesh:charts:lease:<query>`` and ``mesh:charts:last:<query>``: the portal's shared chart
  pollers (which process polls a query, and its last answer).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "KeySpace"]

#: The prefix of every name unless configured otherwise.
DEFAULT_PREFIX = "mesh:"


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The names under one prefix: ``KeySpace("mesh:").topic("orders")`` is ``"mesh:topic:orders"``.

    Cheap to make and immutable, so a component builds one from its configured prefix and keeps
    it; two mesh installations (or two tests) share a Redis by using different prefixes.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str):
            raise TypeError(f"the Redis key prefix must be a string, got {type(self.prefix).__name__}")

    # -- the configuration (the portal's push task writes, runtimes read) -------------------------

    def config(self, version: int) -> str:
        """The snapshot of ``version``: the sealed document as JSON."""
        return f"{self.prefix}config:{version}"

    def config_patch(self, version: int) -> str:
        """The patch that makes ``version`` from the version before it (meshruntime.patch)."""
        return f"{self.prefix}config:{version}:patch"

    @property
    def config_latest(self) -> str:
        """The newest version number; it never goes down."""
        return f"{self.prefix}config:latest"

    @property
    def config_channel(self) -> str:
        """The channel on which a new version number is announced."""
        return f"{self.prefix}config"

    # -- what runtimes report ---------------------------------------------------------------------

    @property
    def runtimes(self) -> str:
        """The heartbeat stream."""
        return f"{self.prefix}runtimes"

    def tap(self, topic: str) -> str:
        """The channel of ``topic``'s live tap."""
        return f"{self.prefix}tap:{topic}"

    def tap_watch(self, topic: str) -> str:
        """Exists (with a TTL the portal renews) while someone watches ``topic``'s tap."""
        return f"{self.prefix}tap:watch:{topic}"

    # Refusals are tapped per scope: all of them (the home page), one topic's, one application's.
    # Each scope has a channel and a watch key; a runtime sends a refusal on every watched scope
    # it belongs to.

    @property
    def refusals(self) -> str:
        """The channel of every refused publish."""
        return f"{self.prefix}refusals"

    @property
    def refusals_watch(self) -> str:
        """Exists (TTL, renewed by the portal) while someone watches every refusal."""
        return f"{self.prefix}refusals:watch"

    def topic_refusals(self, topic: str) -> str:
        """The channel of publishes refused on ``topic``."""
        return f"{self.prefix}refusals:topic:{topic}"

    def topic_refusals_watch(self, topic: str) -> str:
        """Exists (TTL) while someone watches the refusals on ``topic``."""
        return f"{self.prefix}refusals:watch:topic:{topic}"

    def application_refusals(self, application: str) -> str:
        """The channel of publishes refused to ``application``."""
        return f"{self.prefix}refusals:application:{application}"

    def application_refusals_watch(self, application: str) -> str:
        """Exists (TTL) while someone watches the refusals of ``application``."""
        return f"{self.prefix}refusals:watch:application:{application}"

    def journey(self, event_id: str) -> str:
        """The steps of one event (a list of JSON objects, with a TTL)."""
        return f"{self.prefix}journey:{event_id}"

    # -- the Redis Streams event store and delivery -----------------------------------------------

    def topic(self, name: str) -> str:
        """The stream of topic ``name``; one consumer group per subscription."""
        return f"{self.prefix}topic:{name}"

    def dlq(self, subscription_id: str) -> str:
        """The dead-letter stream of a subscription."""
        return f"{self.prefix}dlq:{subscription_id}"

    def redeliver(self, subscription_id: str) -> str:
        """Dead letters the portal put back, read only by that subscription's runtimes."""
        return f"{self.prefix}redeliver:{subscription_id}"

    def delivery(self, subscription_id: str) -> str:
        """The status record (a hash of totals and the last error) of a subscription's delivery."""
        return f"{self.prefix}delivery:{subscription_id}"

    def delivery_minute(self, subscription_id: str, minute: int) -> str:
        """Events delivered in one epoch minute (the delivery rate)."""
        return f"{self.prefix}delivery:{subscription_id}:m:{minute}"

    def delivery_lock(self, subscription_id: str) -> str:
        """The lease of the one runtime that delivers an ordered subscription."""
        return f"{self.prefix}delivery:{subscription_id}:lock"

    def routing(self, rule_id: str) -> str:
        """What runtimes report about a routing rule: the copies it could not make (a hash, see
        meshruntime.routing_report)."""
        return f"{self.prefix}routing:{rule_id}"

    def reply(self, token: str) -> str:
        """The list that holds the reply to one EventMesh request (``RPUSH`` by the responder's
        runtime, ``LPOP`` by the waiting one); the token is the runtime's, never the client's."""
        return f"{self.prefix}reply:{token}"

    @property
    def replies(self) -> str:
        """Channel on which a responder's runtime announces the token of a reply it has pushed."""
        return f"{self.prefix}replies"

    # -- the portal's own push (governance) -------------------------------------------------------

    @property
    def push_pending(self) -> str:
        """Set (with expiry) while a push task is enqueued."""
        return f"{self.prefix}push:pending"

    @property
    def push_recent(self) -> str:
        """Set while a version published within the burst window."""
        return f"{self.prefix}push:recent"

    @property
    def push_lock(self) -> str:
        """Held by the push task that compiles and publishes."""
        return f"{self.prefix}push:lock"

    @property
    def push_changes(self) -> str:
        """The capped list of change records waiting for the next version."""
        return f"{self.prefix}push:changes"

    @property
    def push_status(self) -> str:
        """The outcome of the last push attempt."""
        return f"{self.prefix}push:status"

    @property
    def push_stats(self) -> str:
        """Totals of push attempts by kind and outcome, and their duration histogram (a hash)."""
        return f"{self.prefix}push:stats"

    # -- the portal's charts (tracing.pollers) ----------------------------------------------------

    def chart_lease(self, query: str) -> str:
        """Held (with a TTL) by the one portal process that polls Prometheus for ``query`` (a digest)."""
        return f"{self.prefix}charts:lease:{query}"

    def chart_last(self, query: str) -> str:
        """The last answer to ``query`` (a digest), with its time and any error since, as JSON."""
        return f"{self.prefix}charts:last:{query}"

    # -- all of them ------------------------------------------------------------------------------

    @property
    def pattern(self) -> str:
        """A SCAN ``MATCH`` pattern for every key under this prefix (clean-ups, benchmarks)."""
        return f"{self.prefix}*"
