"""HTTP push of one event to a subscriber's webhook, and what came of it.

One :class:`WebhookClient` (one pool of keep-alive connections per receiver, see
:mod:`.http1`) serves every subscription of a runtime: connections to a receiver are reused
across events and subscriptions, which is most of what makes loopback delivery fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .http1 import Http1Client, HttpError, HttpResponse, InvalidUrl
from .retry import Verdict, classify_status, parse_retry_after
from .signing import SIGNATURE_HEADER, signature_header

__all__ = ["AttemptResult", "WebhookClient"]

MAX_ERROR_TEXT = 200  # of an error response's body, to show an operator why


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One HTTP attempt: the verdict, the status (None when no response), and why it failed."""

    verdict: Verdict
    status: int | None
    latency_s: float
    error: str | None = None  # "timeout after 5000 ms", "cannot connect to ...", "HTTP 503: ..."
    retry_after: float | None = None  # seconds, from the response's Retry-After
    response: HttpResponse | None = None  # a 2xx answer itself: a responder's is a reply (meshruntime.replies)


class WebhookClient:
    def __init__(self, *, user_agent: str = "meshruntime") -> None:
        self.user_agent = user_agent
        self._client: Http1Client | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = Http1Client(user_agent=self.user_agent)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, secret: str,
                   timeout_s: float) -> AttemptResult:
        """POST ``body``, signed with ``secret``; never raises for anything the network does."""
        assert self._client is not None, "start() the WebhookClient first"
        headers[SIGNATURE_HEADER] = signature_header(secret, body)
        started = time.perf_counter()
        try:
            response = await self._client.post(url, headers, body, timeout_s)
        except (TimeoutError, InvalidUrl, HttpError) as error:
            return _result(None, error, started, timeout_s)
        return _result(response, None, started, timeout_s)

    def send(self, url: str, headers: dict[str, str], body: bytes, *, secret: str, timeout_s: float,
             done: Callable[[AttemptResult], None]) -> None:
        """:meth:`post` without a coroutine: ``done(result)`` is called once the attempt is over
        (never before this returns). What the delivery engine uses for an event's first attempt."""
        assert self._client is not None, "start() the WebhookClient first"
        headers[SIGNATURE_HEADER] = signature_header(secret, body)
        self._client.send(url, headers, body, timeout_s, partial(_answered, done, time.perf_counter(), timeout_s))


def _answered(done: Callable[[AttemptResult], None], started: float, timeout_s: float,
              response: HttpResponse | None, error: BaseException | None) -> None:
    done(_result(response, error, started, timeout_s))


def _result(response: HttpResponse | None, error: BaseException | None, started: float,
            timeout_s: float) -> AttemptResult:
    latency = time.perf_counter() - started
    if response is None:
        if isinstance(error, TimeoutError):
            return AttemptResult(Verdict.RETRY, None, latency, f"timeout after {round(timeout_s * 1000)} ms")
        if isinstance(error, InvalidUrl):
            return AttemptResult(Verdict.REJECTED, None, latency, f"invalid webhook URL: {error}")
        # refused, reset, DNS or TLS failure, a malformed or cut-off response: the receiver
        # (or the way to it) may be back on the next attempt.
        return AttemptResult(Verdict.RETRY, None, latency, str(error)[:300])
    status = response.status
    verdict = classify_status(status)
    if verdict is Verdict.DELIVERED:
        return AttemptResult(verdict, status, latency, response=response)
    detail = response.body[:MAX_ERROR_TEXT].decode("utf-8", "replace").strip()
    error_text = f"HTTP {status}" + (f": {detail}" if detail else "")
    if 300 <= status < 400:
        error_text += " (redirects are not followed)"
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    return AttemptResult(verdict, status, latency, error_text, retry_after)
