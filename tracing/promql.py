"""PromQL built in one place, with every label value escaped.

Topic, application and subscription names come from users. Pasted into a query as they are, a
topic named ``a"}or{x="`` would close its selector and open another, and a chart would show
(and a viewer would learn) series it was never meant to. So no query is written with string
formatting anywhere else: charts call :func:`selector`, :func:`rate` and friends, which quote
every value with :func:`string` and check every metric and label name against Prometheus's own
grammar. Pure: no I/O, no Django.

The escaping follows Prometheus's lexer for double-quoted strings (Go's escapes): a backslash,
the quote and control characters are escaped; everything else, any Unicode included, is taken
literally. Regular-expression matchers escape the value for RE2 first (Go's ``QuoteMeta``) and
then as a string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Regex", "by", "histogram_quantile", "labelled", "rate", "regex_any", "selector", "string", "sum_by",
           "union"]

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string(value: str) -> str:
    """``value`` as a PromQL double-quoted string literal that means exactly ``value``."""
    if not isinstance(value, str):
        raise TypeError(f"a PromQL label value must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"a PromQL label value must be valid UTF-8: {value!r}") from None
    out = []
    for char in value:
        escaped = _ESCAPES.get(char)
        if escaped is None and (ord(char) < 0x20 or ord(char) == 0x7F):
            escaped = f"\\x{ord(char):02x}"
        out.append(escaped or char)
    return '"' + "".join(out) + '"'


def _metric(name: str) -> str:
    if not _METRIC.match(name):
        raise ValueError(f"not a Prometheus metric name: {name!r}")
    return name


def _label(name: str) -> str:
    if not _LABEL.match(name) or name.startswith("__"):
        raise ValueError(f"not a Prometheus label name: {name!r}")
    return name


def duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"not a PromQL duration: {value!r}")
    return value


@dataclass(frozen=True)
class Regex:
    """A ``=~`` matcher; build it with :func:`regex_any` from literal values."""

    pattern: str


def regex_any(values: Iterable[str]) -> Regex:
    """Matches exactly one of ``values`` (each taken literally, never as a pattern)."""
    alternatives = sorted({_RE2_SPECIAL.sub(r"\\\1", value) for value in values})
    # An empty set must match nothing: "" would match series without the label.
    return Regex("|".join(alternatives) if alternatives else "$^")


def selector(metric: str, matchers: Mapping[str, str | Regex] | None = None) -> str:
    """``metric{label="value",…}`` with every value quoted; a :class:`Regex` gives ``=~``."""
    parts = []
    for name, value in sorted((matchers or {}).items()):
        if isinstance(value, Regex):
            parts.append(f"{_label(name)}=~{string(value.pattern)}")
        else:
            parts.append(f"{_label(name)}={string(value)}")
    return _metric(metric) + ("{" + ",".join(parts) + "}" if parts else "")


def by(labels: Iterable[str]) -> str:
    names = [_label(name) for name in labels]
    return f" by ({', '.join(names)})" if names else ""


def rate(series: str, window: str) -> str:
    return f"rate({series}[{duration(window)}])"


def sum_by(expression: str, labels: Iterable[str] = ()) -> str:
    return f"sum{by(labels)} ({expression})"


def histogram_quantile(quantile: float, bucket_selector: str, window: str, labels: Iterable[str] = ()) -> str:
    """The ``quantile`` of a histogram over ``window``, per ``labels``."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {quantile!r}")
    keep = ["le", *labels]
    return f"histogram_quantile({quantile:g}, {sum_by(rate(bucket_selector, window), keep)})"


def labelled(expression: str, label: str, value: str) -> str:
    """``expression`` with ``label`` set to ``value`` on every series (to tell the parts of a
    :func:`union` apart)."""
    return f'label_replace({expression}, {string(_label(label))}, {string(value)}, "", "")'


def union(expressions: Iterable[str]) -> str:
    """Several expressions answered by one query (``or``): one request to Prometheus per chart."""
    parts = [f"({expression})" for expression in expressions]
    if not parts:
        raise ValueError("a union needs at least one expression")
    return " or ".join(parts)
