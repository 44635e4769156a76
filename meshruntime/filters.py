"""CloudEvents Subscriptions API filters: validation and fast evaluation.

One implementation serves the runtime, which evaluates a subscription's filters on every event
it delivers, and the portal, which validates filters in forms and previews which events match.

Supported dialects (https://github.com/cloudevents/spec/blob/main/subscriptions/spec.md):

- ``{"exact": {"type": "com.example.order.created"}}``: the attribute equals the value.
- ``{"prefix": {"source": "/orders/"}}``: the attribute starts with the value.
- ``{"suffix": {"subject": ".jpg"}}``: the attribute ends with the value.
- ``{"all": [f, ...]}``, ``{"any": [f, ...]}``: every / at least one nested filter matches;
  the list must not be empty.
- ``{"not": f}``: the nested filter does not match.

``exact``, ``prefix`` and ``suffix`` take an object of attribute name to string. The spec asks
for exactly one entry; we accept several and require all of them to match, which is what
``all`` over one-entry filters would say. Names and values must not be empty (as in the spec).
An attribute that the event lacks (or that is ``None``) never matches, so ``not`` of it does.

The ``sql`` dialect is refused on purpose: no filter ever executes user-supplied code.

Attributes are compared as strings. A non-string value is compared through its CloudEvents
canonical string form: booleans as ``true``/``false``, integers in decimal, bytes in base64,
timestamps (``datetime``) in RFC 3339 with ``Z`` for UTC, anything else through ``str()``
(URIs, for instance). Comparison is case-sensitive.

A subscription's ``filters`` is a list of filters that must all match; an empty list matches
every event.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "DIALECTS",
    "FilterError",
    "Matcher",
    "canonical_string",
    "compile_filter",
    "compile_filters",
    "matches",
    "validate_filter",
    "validate_filters",
]

Matcher = Callable[[Mapping[str, Any]], bool]

STRING_DIALECTS = ("exact", "prefix", "suffix")
LIST_DIALECTS = ("all", "any")
DIALECTS = (*STRING_DIALECTS, *LIST_DIALECTS, "not")

# CloudEvents attribute names: lowercase ASCII letters and digits, at most 20 characters.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_MAX_ATTRIBUTE_NAME = 20
# ``data`` is the payload, never an attribute; matching on it would read event content.
_RESERVED_NAMES = frozenset({"data"})
# Deep enough for any hand-written filter, shallow enough that evaluating one can never
# exhaust the interpreter's stack in the runtime's delivery loop.
MAX_DEPTH = 32

_DIALECT_LIST = ", ".join(DIALECTS)


class FilterError(ValueError):
    """A filter that is not valid. ``path`` says where (``filters[1].any[0].exact``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


# --------------------------------------------------------------------------------------------
# Validation


def validate_filters(filters: Any, path: str = "filters") -> None:
    """Check a subscription's list of filters; raise :class:`FilterError` naming the culprit."""
    if not _is_list(filters):
        raise FilterError(path, f"must be a list of filters, got {_type_name(filters)}")
    for index, item in enumerate(filters):
        _validate(item, f"{path}[{index}]", 1)


def validate_filter(filter_: Any, path: str = "filter") -> None:
    """Check one filter expression; raise :class:`FilterError` naming the culprit."""
    _validate(filter_, path, 1)


def _validate(filter_: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"filters may be nested at most {MAX_DEPTH} levels deep")
    if not isinstance(filter_, Mapping):
        raise FilterError(path, f"a filter must be an object with one dialect, got {_type_name(filter_)}")
    if len(filter_) != 1:
        found = ", ".join(sorted(map(str, filter_))) or "none"
        raise FilterError(path, f"a filter must name exactly one dialect ({_DIALECT_LIST}), got {found}")
    ((dialect, argument),) = filter_.items()
    if dialect == "sql":
        raise FilterError(
            path,
            f"the sql dialect is not supported: filters never execute user code; use one of {_DIALECT_LIST}",
        )
    if dialect not in DIALECTS:
        raise FilterError(path, f"unknown dialect {dialect!r}; expected one of {_DIALECT_LIST}")
    here = f"{path}.{dialect}"
    if dialect in STRING_DIALECTS:
        _validate_attributes(argument, here)
    elif dialect in LIST_DIALECTS:
        if not _is_list(argument):
            raise FilterError(here, f"must be a list of filters, got {_type_name(argument)}")
        if not argument:
            raise FilterError(here, "must contain at least one filter")
        for index, item in enumerate(argument):
            _validate(item, f"{here}[{index}]", depth + 1)
    else:  # not
        _validate(argument, here, depth + 1)


def _validate_attributes(argument: Any, path: str) -> None:
    if not isinstance(argument, Mapping):
        raise FilterError(path, f"must be an object of attribute name to string, got {_type_name(argument)}")
    if not argument:
        raise FilterError(path, "must name at least one attribute")
    for name, value in argument.items():
        if not isinstance(name, str):
            raise FilterError(path, f"attribute name {name!r} must be a string")
        if not name:
            raise FilterError(path, "attribute name must not be empty")
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise FilterError(path, f'attribute name "{name}" must be lowercase letters and digits')
        if len(name) > _MAX_ATTRIBUTE_NAME:
            problem = f'attribute name "{name}" must be at most {_MAX_ATTRIBUTE_NAME} characters'
            raise FilterError(path, problem)
        if name in _RESERVED_NAMES:
            problem = f'"{name}" is the event payload, not an attribute; filters match attributes only'
            raise FilterError(path, problem)
        if not isinstance(value, str):
            raise FilterError(f"{path}.{name}", f"value must be a string, got {_type_name(value)}")
        if not value:
            raise FilterError(f"{path}.{name}", "value must not be empty")


# --------------------------------------------------------------------------------------------
# Evaluation


def canonical_string(value: Any) -> str:
    """The CloudEvents canonical string form of an attribute value (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        text = value.isoformat()
        if value.utcoffset() == timedelta(0) and text.endswith("+00:00"):
            text = text[:-6] + "Z"
        return text
    return str(value)


def _match_everything(attributes: Mapping[str, Any]) -> bool:
    return True


def _attribute_matcher(dialect: str, name: str, expected: str) -> Matcher:
    # The common case (a string attribute) costs one dict lookup, one type check and one
    # comparison; only other types pay for canonical_string().
    if dialect == "exact":

        def match(attributes: Mapping[str, Any]) -> bool:
            value = attributes.get(name)
            if value.__class__ is not str:
                if value is None:
                    return False
                value = canonical_string(value)
            return value == expected

    elif dialect == "prefix":

        def match(attributes: Mapping[str, Any]) -> bool:
            value = attributes.get(name)
            if value.__class__ is not str:
                if value is None:
                    return False
                value = canonical_string(value)
            return value.startswith(expected)

    else:  # suffix

        def match(attributes: Mapping[str, Any]) -> bool:
            value = attributes.get(name)
            if value.__class__ is not str:
                if value is None:
                    return False
                value = canonical_string(value)
            return value.endswith(expected)

    return match


def _conjunction(matchers: list[Matcher]) -> Matcher:
    if not matchers:
        return _match_everything
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda attributes: first(attributes) and second(attributes)
    frozen = tuple(matchers)

    def match(attributes: Mapping[str, Any]) -> bool:
        return all(matcher(attributes) for matcher in frozen)

    return match


def _disjunction(matchers: list[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda attributes: first(attributes) or second(attributes)
    frozen = tuple(matchers)

    def match(attributes: Mapping[str, Any]) -> bool:
        return any(matcher(attributes) for matcher in frozen)

    return match


def _build(filter_: Mapping[str, Any]) -> Matcher:
    ((dialect, argument),) = filter_.items()
    if dialect in STRING_DIALECTS:
        return _conjunction([_attribute_matcher(dialect, name, value) for name, value in argument.items()])
    if dialect == "all":
        return _conjunction([_build(item) for item in argument])
    if dialect == "any":
        return _disjunction([_build(item) for item in argument])
    inner = _build(argument)
    return lambda attributes: not inner(attributes)


def compile_filter(filter_: Any) -> Matcher:
    """Validate one filter and return a function ``attributes -> bool`` that evaluates it."""
    validate_filter(filter_)
    return _build(filter_)


def compile_filters(filters: Any) -> Matcher:
    """Validate a list of filters and return a function ``attributes -> bool`` for their AND.

    Compile once per subscription (when a configuration is applied) and call the result for
    every event: the tree is turned into closures, so evaluation does no parsing or dispatch.
    """
    validate_filters(filters)
    return _conjunction([_build(item) for item in filters])


def matches(filters: Any, attributes: Mapping[str, Any]) -> bool:
    """Whether an event with these attributes passes the filters (for previews and one-offs)."""
    return compile_filters(filters)(attributes)
