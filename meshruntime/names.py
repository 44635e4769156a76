"""Names the mesh shares between portal and runtime."""

from __future__ import annotations

import re

TOPIC_NAME_MAX_LENGTH = 249
#: Lowercase dot-separated segments of letters, digits, ``-`` and ``_``.
TOPIC_NAME_PATTERN = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$"
_TOPIC_NAME = re.compile(TOPIC_NAME_PATTERN)


def topic_name_error(name: str) -> str | None:
    """Why ``name`` is not a valid topic name, or None when it is."""
    if not name:
        return "a topic name may not be empty"
    if len(name) > TOPIC_NAME_MAX_LENGTH:
        return f"a topic name has at most {TOPIC_NAME_MAX_LENGTH} characters (this one has {len(name)})"
    if not _TOPIC_NAME.match(name):
        return ("a topic name is lowercase dot-separated segments of letters, digits, '-' and '_' "
                "(like orders.eu.created)")
    return None
