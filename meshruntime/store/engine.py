"""What the engines other than Redis (Kafka, NATS JetStream, MQTT) share.

Each is opened from a URL of its own scheme, refused in the same words when the URL is not one;
each carries the same names (the mesh's prefix, the store's name, a label for its errors and
logs); and none keeps journeys: their steps go to the :class:`~.base.Journal` the store was
opened with (the mesh's Redis). Connecting is each engine's own, as its client library is.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from urllib.parse import SplitResult, urlsplit

from .base import Journal, JourneyStep, StoreError, redact


def split_url(url: str, name: str, schemes: Collection[str], shape: str, *, host_list: bool = False) -> SplitResult:
    """The parts of store ``name``'s URL; a ValueError naming the store unless the scheme is one of
    ``schemes`` and the URL names a server (``host_list``: one or more, as Kafka's bootstrap
    servers ``host:port,host:port`` are). ``shape`` says what the URL should be ("a kafka://host:port URL")."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not (parts.netloc if host_list else parts.hostname):
        raise ValueError(f"event store {name!r}: {redact(url)!r} is not {shape}")
    return parts


class JournalledStore:
    """The names such a store carries, and its journeys handed to its journal."""

    kind: str

    def __init__(self, *, prefix: str, name: str, where: str, journal: Journal | None,
                 connect_timeout_s: float) -> None:
        self.prefix = prefix
        self.name = name
        self.label = f"event store {name!r} ({self.kind} at {where})"
        self.journal = journal
        self.connect_timeout_s = connect_timeout_s

    async def record_journey(self, steps: Sequence[JourneyStep]) -> None:
        if not steps:
            return
        if self.journal is None:
            raise StoreError(f"{self.label} keeps no journeys and was given no journal for them")
        await self.journal.record_journey(steps)
