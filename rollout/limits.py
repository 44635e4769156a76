"""The runtimes' size limit on the configuration document, checked before a push announces one.

Each runtime refuses, unread, a snapshot longer than its ``--max-config-bytes`` and keeps the
document it has (meshruntime.config_watcher); its heartbeats carry that limit (rollout.registry).
A document over the smallest limit among the live runtimes would be announced only to be refused
by them, and the operator would learn it later from the runtimes page, runtime by runtime. So a
push measures the document as Redis will hold it and refuses it here, with the same ConfigError
a document failing validation raises: the push is recorded as failed with the reason, and the
version announced before stays announced.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from meshruntime.config import DEFAULT_MAX_DOCUMENT_BYTES, ConfigError

from .models import Runtime

NAMES_SHOWN = 5  # runtimes named in the message; the rest are counted


def live_limits() -> dict[str, int]:
    """The ``--max-config-bytes`` of each runtime not gone that reports one, by runtime id."""
    cutoff = timezone.now() - timedelta(seconds=settings.MESH_RUNTIME_GONE_SECONDS)
    return dict(Runtime.objects.filter(last_seen__gte=cutoff, max_config_bytes__isnull=False)
                .values_list("runtime_id", "max_config_bytes"))


def _named(runtime_ids: list[str]) -> str:
    shown = ", ".join(runtime_ids[:NAMES_SHOWN])
    more = len(runtime_ids) - NAMES_SHOWN
    return f"runtime{'s' if len(runtime_ids) > 1 else ''} {shown}" + (f" and {more} more" if more > 0 else "")


def size_problem(size: int, limits: dict[str, int]) -> str:
    """Why runtimes with these ``limits`` (by runtime id) refuse a document of ``size`` bytes, naming
    the smallest limit and the runtimes that have it; "" when none refuses it. Without a reported
    limit, the runtimes' default is the one that counts."""
    if not limits:
        if size <= DEFAULT_MAX_DOCUMENT_BYTES:
            return ""
        return (f"the document is {size:,} bytes, over the default limit of {DEFAULT_MAX_DOCUMENT_BYTES:,} "
                "of the runtimes (--max-config-bytes; no live runtime reports its own)")
    refusing = sorted((limit, runtime_id) for runtime_id, limit in limits.items() if limit < size)
    if not refusing:
        return ""
    smallest = refusing[0][0]
    at_smallest = [runtime_id for limit, runtime_id in refusing if limit == smallest]
    problem = (f"the document is {size:,} bytes, over the limit of {smallest:,} of {_named(at_smallest)} "
               "(--max-config-bytes)")
    higher = len(refusing) - len(at_smallest)
    if higher == 1:
        problem += "; 1 more runtime with a higher limit refuses it too"
    elif higher:
        problem += f"; {higher} more runtimes with higher limits refuse it too"
    return problem


def check_document_size(doc: dict[str, Any]) -> None:
    """Raise ConfigError if a live runtime would refuse ``doc`` for its length. Measured as
    meshruntime.config_publish stores it (orjson), which is what a runtime's ``STRLEN`` sees."""
    problem = size_problem(len(orjson.dumps(doc)), live_limits())
    if problem:
        raise ConfigError(problem)
