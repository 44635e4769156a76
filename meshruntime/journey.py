"""Journey records: the steps one event went through, kept under ``<prefix>journey:<event id>``.

The publish path writes ``accepted``, ``routed`` and ``stored`` steps in the same pipeline as
the append (the store carries them), ``denied`` on its own. The delivery side adds
``attempt``, ``acked`` and ``dead_lettered`` with :meth:`JourneyRecorder.step` too, so both
agree on the shape and on which events are sampled.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import orjson

from .store import JourneyStep

__all__ = ["JourneyRecorder"]

_SCALE = 1_000_000


class JourneyRecorder:
    """Builds journey steps for sampled events.

    Sampling is decided by the event id (CRC-32), not by chance, so every runtime an event
    passes through makes the same choice and a sampled journey is complete.
    """

    def __init__(self, runtime_id: str, *, sample_rate: float = 1.0) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"journey sample rate must be between 0 and 1, got {sample_rate}")
        self.runtime_id = runtime_id
        self.sample_rate = sample_rate
        self._threshold = int(sample_rate * _SCALE)
        self._templates: dict[tuple, tuple[bytes, bytes]] = {}

    @property
    def enabled(self) -> bool:
        return self._threshold > 0

    def sampled(self, event_id: str) -> bool:
        if self._threshold >= _SCALE:
            return True
        if self._threshold <= 0:
            return False
        return zlib.crc32(event_id.encode("utf-8", "surrogatepass")) % _SCALE < self._threshold

    def template(self, step: str, **fields: Any) -> tuple[bytes, bytes]:
        """``(head, tail)`` such that ``head + b"<epoch ms>" + tail`` is the step's JSON.

        For the publish path, which writes the same few steps for every event: the JSON is
        encoded once per kind of step, not once per event. Cached per step and fields.
        """
        key = (step, tuple(fields.items()))
        cached = self._templates.get(key)
        if cached is None:
            rest = orjson.dumps({"runtime": self.runtime_id, **fields})
            cached = (b'{"step":' + orjson.dumps(step) + b',"at":', b"," + rest[1:])
            if len(self._templates) >= 10_000:
                self._templates.clear()
            self._templates[key] = cached
        return cached

    def step(self, event_id: str, step: str, at_ms: int | None = None, **fields: Any) -> JourneyStep:
        """One step as stored: ``{"step", "at" (epoch ms), "runtime", ...fields}``."""
        record = {"step": step, "at": at_ms if at_ms is not None else int(time.time() * 1000),
                  "runtime": self.runtime_id}
        record.update(fields)
        return JourneyStep(event_id, orjson.dumps(record))
