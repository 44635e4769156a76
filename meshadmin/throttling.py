"""Throttling of sign-ins and of API token guesses.

Failed sign-ins are counted twice:

- per account and client address (the *pair*): the first ``MESH_LOGIN_FREE_FAILURES`` cost
  nothing (typos), then each further failure doubles the wait before the next try, up to
  ``MESH_LOGIN_BACKOFF_MAX_SECONDS``. A brute-forcer gets a handful of guesses an hour; the real
  user, signing in from another address, is not affected at all, so nobody can lock an account
  by failing on purpose. A success clears the pair.
- per client address, whatever the account: more than ``MESH_LOGIN_ADDRESS_FAILURES`` failures
  in ``MESH_LOGIN_ADDRESS_WINDOW_SECONDS`` block the address until the window ends (password
  spraying: one guess at many accounts).

API token guesses (an ``Authorization`` header with a key that matches no token) are counted per
address the same way (``MESH_API_AUTH_FAILURES`` per minute), and every API call per token by
DRF's throttling (``meshadmin.api.throttling``, ``MESH_API_RATE``). All of it lives in Django's
cache (the portal's Redis, under the cache's own prefix), with expiries, so it cleans itself up.

Why not django-axes: it has one failure limit for all its lockout parameters, where the pair and
the address need different limits, and a back-off that grows per failure; and its lockouts do
not cover token guesses. What is needed fits in this module.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

#: Where a sign-in refused by the throttle leaves its wait (seconds) on the request.
RETRY_AFTER_ATTRIBUTE = "login_retry_after"


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or, behind ``MESH_TRUSTED_PROXIES`` proxies, the
    address the outermost of them saw (X-Forwarded-For read from the right, as DRF's NUM_PROXIES)."""
    proxies = settings.MESH_TRUSTED_PROXIES
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return remote


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _key(kind: str, *parts: str) -> str:
    """Every cache key of this module (the cache adds its own prefix)."""
    return f"throttle:{kind}:{_digest(*parts)}"


@dataclass(frozen=True)
class AddressWindow:
    """At most ``limit`` failures of one kind per address in each ``window`` seconds."""

    kind: str
    address: str
    limit: int
    window: int

    def _slot(self, now: float) -> tuple[str, float]:
        start = now - now % self.window
        return _key(f"{self.kind}-address", self.address, str(int(start))), start + self.window

    def wait(self, now: float | None = None) -> int:
        """Seconds until the address may try again (0: it may)."""
        now = time.time() if now is None else now
        key, end = self._slot(now)
        return math.ceil(end - now) if (cache.get(key) or 0) >= self.limit else 0

    def hit(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        key, _end = self._slot(now)
        if not cache.add(key, 1, timeout=self.window + 1):
            try:
                cache.incr(key)
            except ValueError:  # expired in between
                cache.add(key, 1, timeout=self.window + 1)


@dataclass(frozen=True)
class LoginGate:
    """The throttle of one account (by the name typed) from one address."""

    username: str
    address: str

    @property
    def _pair(self) -> str:
        return _key("login-pair", self.username.casefold(), self.address)

    @property
    def addresses(self) -> AddressWindow:
        return AddressWindow("login", self.address, settings.MESH_LOGIN_ADDRESS_FAILURES,
                             settings.MESH_LOGIN_ADDRESS_WINDOW_SECONDS)

    def backoff(self, failures: int) -> int:
        """Seconds to wait after ``failures`` failures in a row (0 for the free ones)."""
        over = failures - settings.MESH_LOGIN_FREE_FAILURES
        if over < 0:
            return 0
        return min(2 ** min(over, 30), settings.MESH_LOGIN_BACKOFF_MAX_SECONDS)

    def wait(self, now: float | None = None) -> int:
        """Seconds before this account may be tried again from this address (0: now)."""
        now = time.time() if now is None else now
        state = cache.get(self._pair)
        pair_wait = 0
        if state is not None:
            failures, last = state
            pair_wait = max(0, math.ceil(last + self.backoff(failures) - now))
        return max(pair_wait, self.addresses.wait(now))

    def failed(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        failures = (cache.get(self._pair) or (0, now))[0] + 1
        # Kept a day past the longest wait: a slow guesser stays slowed down.
        cache.set(self._pair, (failures, now), timeout=settings.MESH_LOGIN_BACKOFF_MAX_SECONDS + 86_400)
        self.addresses.hit(now)

    def refused(self, now: float | None = None) -> None:
        """A try while waiting: not a guess (the password was not checked), but the address pays."""
        self.addresses.hit(now)

    def succeeded(self) -> None:
        cache.delete(self._pair)


class ThrottledModelBackend(ModelBackend):
    """Django's backend behind the login gate: while the gate says wait, the password is not even
    checked (``authenticate()`` answers None and sends ``user_login_failed``), and the wait is
    left on the request for the sign-in page to say. Without a request (the shell, a test
    client's ``login()``) there is no address, and no throttle."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or username is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        gate = LoginGate(str(username), client_address(request))
        wait = gate.wait()
        if wait:
            gate.refused()
            setattr(request, RETRY_AFTER_ATTRIBUTE, wait)
            raise PermissionDenied(f"Too many failed sign-ins: try again in {wait} s.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            gate.failed()
        else:
            gate.succeeded()
        return user


def token_guesses(request) -> AddressWindow:
    """The window of failed API token authentications of the request's address."""
    return AddressWindow("token", client_address(request), settings.MESH_API_AUTH_FAILURES, 60)
