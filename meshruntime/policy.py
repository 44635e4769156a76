"""Access policy: who may publish or subscribe to which topic.

One evaluator serves the runtime's hot path (``Policy.decide``, called for every publish and
every subscription) and the portal's simulator (``Policy.explain``, which also says which rule
decided). Rules come from the MeshConfig document (docs/meshconfig.md)::

    {"id": "rule-12", "principals": ["billing", "shipping"], "topic": "orders.*",
     "actions": ["publish", "subscribe"], "effect": "allow", "description": ""}

``principals`` lists application names (teams are already expanded by the compiler) or is
``"*"`` (also accepted as ``["*"]``) for every application. ``topic`` is a pattern: ``*`` for
every topic, ``orders.*`` for every topic whose name starts with ``orders.``, anything else an
exact topic name.

Semantics: default deny; a matching deny beats any matching allow. The deciding rule is the
most specific matching deny, else the most specific matching allow, else none (default deny).
Specificity: exact name, then longer prefix, then ``*``; on a tie a rule naming the application
beats an everyone rule, then the smaller id wins.

Cost: ``from_rules`` indexes rules per action and principal by pattern, so a decision costs
at most one dict probe per topic segment (plus one), for the application and everyone together,
whatever the number of rules (as many again in a mesh too large to merge the two; see
"Index"). Decisions are also cached per policy; a policy never changes (a new configuration
builds a new one), so the cache never needs invalidating.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = [
    "ACTIONS",
    "Decision",
    "Policy",
    "PolicyError",
    "pattern_matches",
    "validate_pattern",
    "validate_rule",
    "topic_name_folded",
    "validate_topic_name",
]

ACTIONS = ("publish", "subscribe")
EFFECTS = ("allow", "deny")
EVERYONE = "*"
MAX_TOPIC_LENGTH = 249
DEFAULT_CACHE_SIZE = 65_536
MERGE_LIMIT = 250_000  # applications x everyone's patterns, per action: at most about 5 MB each (see "Index")

# Dot-separated segments of ASCII letters (either case), digits, '-' and '_': what every store,
# Redis key, metric label and URL path takes as is, and what Apache EventMesh's clients use
# (``TEST-TOPIC-HTTP-ASYNC``, ``EventMesh.SyncRequestInstance``). Names are case-sensitive; the
# catalog and the config validation refuse two names that differ only in case (see
# :func:`topic_name_folded`), so that a name cannot be mistaken for another.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_RULE = "dot-separated segments of letters, digits, '-' and '_'"

# Bits of an index entry: whether some allow / some deny rule sits there.
_ALLOW = 1
_DENY = 2


class PolicyError(ValueError):
    """An access rule, a pattern or a query that is not valid."""


# --------------------------------------------------------------------------------------------
# Topic patterns


def validate_topic_name(name: Any) -> None:
    """Raise :class:`PolicyError` unless ``name`` is a valid topic name."""
    if not isinstance(name, str) or not name:
        raise PolicyError("a topic name must be a non-empty string")
    if len(name) > MAX_TOPIC_LENGTH:
        raise PolicyError(f"topic name {name[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    if not _TOPIC_NAME.fullmatch(name):
        raise PolicyError(f"topic name {name!r} must be {_RULE}")


def topic_name_folded(name: str) -> str:
    """The form in which two topic names must differ: ``TEST-TOPIC`` and ``test-topic`` are one
    name to people, so the catalog and a MeshConfig document hold at most one of them."""
    return name.lower()


def validate_pattern(pattern: Any) -> None:
    """Raise :class:`PolicyError` unless ``pattern`` is ``*``, ``<name>.*`` or a topic name."""
    if not isinstance(pattern, str) or not pattern:
        raise PolicyError("a topic pattern must be a non-empty string")
    if pattern == "*":
        return
    if len(pattern) > MAX_TOPIC_LENGTH:
        raise PolicyError(f"topic pattern {pattern[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    name = pattern[:-2] if pattern.endswith(".*") else pattern
    if not _TOPIC_NAME.fullmatch(name):
        raise PolicyError(
            f"topic pattern {pattern!r} must be '*', '<name>.*' or a topic name "
            f"({_RULE})")


def pattern_matches(pattern: str, topic: str) -> bool:
    """Whether ``pattern`` covers ``topic``. ``orders.*`` covers ``orders.eu.created``, not ``orders``."""
    validate_pattern(pattern)
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-1])
    return topic == pattern


# --------------------------------------------------------------------------------------------
# Rules


def _principals(rule: Mapping[str, Any], rule_id: str) -> tuple[str, ...] | None:
    """The rule's applications in order without duplicates, or None for everyone."""
    principals = rule.get("principals")
    if principals == EVERYONE:
        return None
    if not isinstance(principals, Sequence) or isinstance(principals, str | bytes):
        raise PolicyError(f'rule {rule_id}: "principals" must be a list of application names or "*"')
    if not principals:
        raise PolicyError(f'rule {rule_id}: "principals" must name at least one application, or be "*"')
    for name in principals:
        if not isinstance(name, str) or not name:
            raise PolicyError(f'rule {rule_id}: "principals" must hold non-empty strings, got {name!r}')
    if EVERYONE in principals:
        if len(principals) > 1:
            raise PolicyError(f'rule {rule_id}: "principals" cannot mix "*" with application names')
        return None
    return tuple(dict.fromkeys(principals))


def validate_rule(rule: Any) -> None:
    """Raise :class:`PolicyError` naming the rule and the field unless ``rule`` is valid.

    Unknown keys are ignored so that a runtime can apply a document from a newer portal.
    """
    _normalise(rule)


@dataclass(frozen=True, slots=True)
class _Rule:
    """A validated rule, plus what ordering and indexing need."""

    data: dict[str, Any]
    id: str
    principals: tuple[str, ...] | None  # None: everyone
    pattern: str
    actions: tuple[str, ...]
    deny: bool

    @property
    def specificity(self) -> tuple[int, int]:
        """Smaller sorts first: exact, then longer prefixes, then ``*``."""
        if self.pattern == "*":
            return (2, 0)
        if self.pattern.endswith(".*"):
            return (1, -self.pattern.count("."))
        return (0, 0)

    @property
    def precedence(self) -> tuple[Any, ...]:
        """Sort key of the ``matched`` list; its first element is the deciding rule."""
        return (not self.deny, self.specificity, self.principals is None, self.id)


def _normalise(rule: Any) -> _Rule:
    if not isinstance(rule, Mapping):
        raise PolicyError(f"an access rule must be an object, got {type(rule).__name__}")
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise PolicyError(f'an access rule needs a non-empty string "id", got {rule_id!r}')
    principals = _principals(rule, rule_id)
    pattern = rule.get("topic")
    try:
        validate_pattern(pattern)
    except PolicyError as error:
        raise PolicyError(f'rule {rule_id}: "topic": {error}') from None
    actions = rule.get("actions")
    if not isinstance(actions, Sequence) or isinstance(actions, str | bytes) or not actions:
        raise PolicyError(f'rule {rule_id}: "actions" must be a non-empty list of "publish" and "subscribe"')
    for action in actions:
        if action not in ACTIONS:
            raise PolicyError(f'rule {rule_id}: "actions" holds {action!r}; expected "publish" or "subscribe"')
    effect = rule.get("effect")
    if effect not in EFFECTS:
        raise PolicyError(f'rule {rule_id}: "effect" must be "allow" or "deny", got {effect!r}')
    description = rule.get("description", "")
    if description is not None and not isinstance(description, str):
        raise PolicyError(f'rule {rule_id}: "description" must be a string')
    # A private copy in the caller's shape: explanations show the rule as written, and what
    # they show cannot drift from the index if the caller mutates its dict later.
    raw_principals = rule["principals"]
    data = {
        **rule,
        "principals": raw_principals if isinstance(raw_principals, str) else list(raw_principals),
        "actions": list(actions),
    }
    return _Rule(
        data=data,
        id=rule_id,
        principals=principals,
        pattern=str(pattern),  # an exact str, as sys.intern() wants
        actions=tuple(dict.fromkeys(actions)),
        deny=effect == "deny",
    )


# --------------------------------------------------------------------------------------------
# Index
#
# Each bucket (one principal, or everyone, for one action) is a flat dict keyed by pattern:
# exact names, ``<prefix>.*`` and ``*``. A topic is turned once into the patterns that could
# cover it, most specific first (``orders.eu.created`` -> itself, ``orders.eu.*``, ``orders.*``,
# ``*``). A flat dict does what a trie over segments would, with fewer objects to chase; keys
# are interned so that a probe that hits compares by identity.
#
# For decide(), each pattern's bits are folded together with those of every less specific
# pattern of the same bucket that covers it, so the first pattern found answers for the
# bucket: a lookup is at most one probe per topic segment, plus one, per bucket, whatever the
# number of rules.
#
# Each application's table also takes in everyone's patterns, folded with both buckets'
# covering patterns, so that the first pattern found answers for the application and for
# everyone at once: one series of probes instead of two. That costs everyone's patterns once
# per application, so it is done while the product stays under MERGE_LIMIT entries (a mesh of
# many applications and many everyone rules keeps two series of probes instead).


@lru_cache(maxsize=16_384)
def _covering_patterns(topic: str) -> tuple[str, ...]:
    """Every pattern that covers ``topic``, most specific first (a pure function of the topic).

    Given a pattern instead (``orders.*``), it returns the patterns that cover that pattern.
    """
    segments = topic.split(".")
    prefixes = [".".join(segments[:length]) + ".*" for length in range(len(segments) - 1, 0, -1)]
    # dict.fromkeys drops the repeats that a pattern (or a malformed topic) produces.
    return tuple(sys.intern(pattern) for pattern in dict.fromkeys([str(topic), *prefixes, "*"]))


class _Bucket:
    """The rules of one principal (or of everyone) for one action, by pattern."""

    __slots__ = ("masks", "rules")

    def __init__(self) -> None:
        self.masks: dict[str, int] = {}  # pattern -> _ALLOW | _DENY bits of its own rules
        self.rules: dict[str, list[_Rule]] = {}  # pattern -> rules, for explain()

    def add(self, rule: _Rule) -> None:
        pattern = sys.intern(rule.pattern)
        self.masks[pattern] = self.masks.get(pattern, 0) | (_DENY if rule.deny else _ALLOW)
        self.rules.setdefault(pattern, []).append(rule)

    def folded(self, patterns: Iterable[str] | None = None) -> dict[str, int]:
        """pattern -> bits of every rule here whose pattern covers it (see above), for this
        bucket's own patterns or for the ``patterns`` given."""
        masks = self.masks
        folded = {}
        for pattern in masks if patterns is None else patterns:
            bits = 0
            for covering in _covering_patterns(pattern):
                bits |= masks.get(covering, 0)
            folded[pattern] = bits
        return folded

    def merged(self, everyone: _Bucket, everyone_folded: dict[str, int]) -> dict[str, int]:
        """pattern -> bits of this bucket's and everyone's rules whose pattern covers it, for
        the patterns of both (see above). ``everyone_folded`` is ``everyone.folded()``, made
        once for all applications; only this bucket's other patterns are folded here."""
        patterns = dict.fromkeys([*self.masks, *everyone_folded])
        own = self.folded(patterns)
        theirs = everyone.folded(p for p in self.masks if p not in everyone_folded)
        return {pattern: own[pattern] | (everyone_folded.get(pattern) or theirs.get(pattern, 0))
                for pattern in patterns}


class _ActionIndex:
    __slots__ = ("applications", "everyone")

    def __init__(self) -> None:
        self.applications: dict[str, _Bucket] = {}
        self.everyone = _Bucket()

    def add(self, rule: _Rule) -> None:
        if rule.principals is None:
            self.everyone.add(rule)
            return
        for application in rule.principals:
            bucket = self.applications.get(application)
            if bucket is None:
                bucket = self.applications[application] = _Bucket()
            bucket.add(rule)


# --------------------------------------------------------------------------------------------
# Policy


def _unknown_action(action: object) -> PolicyError:
    return PolicyError(f'unknown action {action!r}; expected "publish" or "subscribe"')


@dataclass(frozen=True)
class Decision:
    """The outcome of a query and why: ``deciding_rule`` is None for the default deny."""

    allowed: bool
    deciding_rule: dict[str, Any] | None
    matched: list[dict[str, Any]] = field(default_factory=list)  # by precedence, deciding first

    @property
    def reason(self) -> str:
        """One line for people: which rule decided, or that nothing matched."""
        if self.deciding_rule is None:
            return "denied: no rule matches (default deny)"
        verb = "allowed" if self.allowed else "denied"
        return f"{verb} by rule {self.deciding_rule['id']} ({self.deciding_rule['topic']})"


class Policy:
    """An immutable, indexed set of access rules. Build it with :meth:`from_rules`."""

    def __init__(self, rules: Sequence[_Rule], cache_size: int = DEFAULT_CACHE_SIZE,
                 merge_limit: int = MERGE_LIMIT) -> None:
        self._rules = tuple(rules)
        self._index = {action: _ActionIndex() for action in ACTIONS}
        for rule in self._rules:
            for action in rule.actions:
                self._index[action].add(rule)
        # The hot path reads plain dicts: action -> (application -> bits, everyone's bits, whether
        # the applications' tables include everyone's patterns; see "Index" above).
        self._tables = {}
        for action, index in self._index.items():
            everyone = index.everyone
            everyone_folded = everyone.folded()
            merge = len(index.applications) * len(everyone.masks) <= merge_limit
            applications = {application: bucket.merged(everyone, everyone_folded) if merge else bucket.folded()
                            for application, bucket in index.applications.items()}
            self._tables[action] = (applications, everyone_folded, merge)
        # Decisions by action, application and topic: nested dicts rather than one dict keyed
        # by a tuple, so that a hit allocates nothing. Per instance, so a new configuration
        # starts empty; emptied when full, since a bound matters more here than recency.
        self._cache_size = cache_size
        self._cached = 0
        self._cache: dict[str, dict[str, dict[str, bool]]] = {action: {} for action in ACTIONS}

    @classmethod
    def from_rules(cls, rules: Iterable[Mapping[str, Any]], *, cache_size: int = DEFAULT_CACHE_SIZE,
                   merge_limit: int = MERGE_LIMIT) -> Policy:
        """Validate ``rules`` (MeshConfig ``access_rules``) and index them.

        Raises :class:`PolicyError` naming the rule and the field at the first invalid rule, or
        when two rules share an id (explanations name rules by id, so ids must be unique).
        ``cache_size`` bounds the decision cache (0 disables it); ``merge_limit`` bounds the
        merged tables (see "Index"; 0 keeps everyone's patterns apart).
        """
        normalised: list[_Rule] = []
        seen: set[str] = set()
        for position, rule in enumerate(rules):
            try:
                item = _normalise(rule)
            except PolicyError as error:
                raise PolicyError(f"access_rules[{position}]: {error}") from None
            if item.id in seen:
                raise PolicyError(f"access_rules[{position}]: rule id {item.id!r} is used twice")
            seen.add(item.id)
            normalised.append(item)
        return cls(normalised, cache_size=cache_size, merge_limit=merge_limit)

    @property
    def rules(self) -> list[dict[str, Any]]:
        """The rules, in the order given."""
        return [rule.data for rule in self._rules]

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def cached_decisions(self) -> int:
        """How many decisions the cache holds now (never more than ``cache_size``)."""
        return self._cached

    def _action_index(self, action: str) -> _ActionIndex:
        index = self._index.get(action)
        if index is None:
            raise _unknown_action(action)
        return index

    def decide(self, application: str, topic: str, action: str) -> bool:
        """Whether ``application`` may do ``action`` ("publish" or "subscribe") on ``topic``."""
        try:
            return self._cache[action][application][topic]
        except KeyError:
            pass
        allowed = self.decide_uncached(application, topic, action)
        if self._cache_size > 0:
            if self._cached >= self._cache_size:
                for by_application in self._cache.values():
                    by_application.clear()
                self._cached = 0
            self._cache[action].setdefault(application, {})[topic] = allowed
            self._cached += 1
        return allowed

    def decide_uncached(self, application: str, topic: str, action: str) -> bool:
        """:meth:`decide` answered by the index alone, for one-off questions and measurements."""
        tables = self._tables.get(action)
        if tables is None:
            raise _unknown_action(action)
        applications, everyone, merged = tables
        patterns = _covering_patterns(topic)
        own = applications.get(application)
        if merged or own is None:  # one table answers for the application and for everyone
            table = everyone if own is None else own
            for pattern in patterns:
                found = table.get(pattern)
                if found is not None:
                    return found == _ALLOW  # some allow and no deny
            return False
        bits = 0
        for pattern in patterns:
            found = everyone.get(pattern)
            if found is not None:
                bits = found
                break
        for pattern in patterns:
            found = own.get(pattern)
            if found is not None:
                bits |= found
                break
        return bits == _ALLOW

    def explain(self, application: str, topic: str, action: str) -> Decision:
        """The decision with every matching rule, by precedence, and the one that decided."""
        index = self._action_index(action)
        buckets = [index.everyone]
        if application in index.applications:
            buckets.append(index.applications[application])
        patterns = _covering_patterns(topic)
        matched = sorted(
            (rule for bucket in buckets for pattern in patterns for rule in bucket.rules.get(pattern, ())),
            key=lambda rule: rule.precedence,
        )
        if not matched:
            return Decision(allowed=False, deciding_rule=None, matched=[])
        return Decision(
            allowed=not matched[0].deny,
            deciding_rule=matched[0].data,
            matched=[rule.data for rule in matched],
        )

    def who_may(self, topic: str, action: str, applications: Iterable[str]) -> list[str]:
        """Those of ``applications`` allowed to do ``action`` on ``topic``, in the order given."""
        return [application for application in applications if self.decide_uncached(application, topic, action)]
