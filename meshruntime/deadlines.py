"""Deadlines of many operations under way, kept with one timer.

A timer per operation (``call_at`` when it starts, ``cancel`` when it ends in time, which is
nearly always) costs microseconds each, a share of the CPU worth saving on the paths that run
thousands of times a second (a webhook push, a Redis round trip of the append or the delivery
read). Here an operation's deadline is a number on the operation, the operations under way are a
set, and one timer is armed for the earliest deadline; when it fires, the operations whose
deadline has come are expired and it is armed for the next.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

__all__ = ["Deadlines", "Timed"]


class Timed(Protocol):
    deadline: float  # on the loop's clock

    def expire(self) -> None:
        """The deadline has come and the operation is still under way."""


class Deadlines:
    """Operations under way and the one timer that expires them."""

    def __init__(self) -> None:
        self._busy: set[Timed] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def watch(self, operation: Timed, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Expire ``operation`` at ``deadline`` unless it is discarded before."""
        operation.deadline = deadline
        self._busy.add(operation)
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = loop.call_at(deadline, self._expire_due, loop)

    def discard(self, operation: Timed) -> None:
        """The operation is over (in time, or otherwise)."""
        self._busy.discard(operation)

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        now = loop.time() + 0.001  # the loop's timers have millisecond resolution
        busy = self._busy
        for operation in [operation for operation in busy if operation.deadline <= now]:
            busy.discard(operation)
            operation.expire()
        if busy:  # (an expired operation's callbacks may have armed the timer again meanwhile)
            nearest = min(operation.deadline for operation in busy)
            if nearest < self._timer_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = nearest
                self._timer = loop.call_at(nearest, self._expire_due, loop)
