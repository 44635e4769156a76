"""HTTP push of one event to a subscriber's webhook, and what came of it.

One :class:`WebhookClient` (one aiohttp session, one connection pool with keep-alive) serves
every subscription of a runtime: connections to a receiver are reused across events and
subscriptions, which is most of what makes loopback delivery fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from .retry import Verdict, classify_status, parse_retry_after
from .signing import SIGNATURE_HEADER, signature_header

__all__ = ["AttemptResult", "WebhookClient"]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
# Enough of an error response to show an operator why; the rest is not read into memory.
MAX_ERROR_BODY = 512


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One HTTP attempt: the verdict, the status (None when no response), and why it failed."""

    verdict: Verdict
    status: int | None
    latency_s: float
    error: str | None = None  # "timeout after 5000 ms", "connection refused: ...", "HTTP 503: ..."
    retry_after: float | None = None  # seconds, from the response's Retry-After


class WebhookClient:
    def __init__(self, *, user_agent: str = "meshruntime", connections: int = 0) -> None:
        self.user_agent = user_agent
        self._connections = connections  # 0: no global limit; each subscription bounds its own
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0,
                                             keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  headers={"User-Agent": self.user_agent})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, secret: str,
                   timeout_s: float) -> AttemptResult:
        """POST ``body``, signed with ``secret``; never raises for anything the network does."""
        assert self._session is not None, "start() the WebhookClient first"
        headers[SIGNATURE_HEADER] = signature_header(secret, body)
        started = time.perf_counter()
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                status = response.status
                verdict = classify_status(status)
                if verdict is Verdict.DELIVERED:
                    await response.read()  # drained, so the connection goes back to the pool
                    return AttemptResult(verdict, status, time.perf_counter() - started)
                detail = (await response.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace").strip()
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        except TimeoutError:
            return AttemptResult(Verdict.RETRY, None, time.perf_counter() - started,
                                 f"timeout after {round(timeout_s * 1000)} ms")
        except aiohttp.InvalidURL as error:
            return AttemptResult(Verdict.REJECTED, None, time.perf_counter() - started,
                                 f"invalid webhook URL: {error}")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                aiohttp.ClientResponseError) as error:
            # refused, reset, DNS failure, TLS failure, a malformed or cut-off response: the
            # receiver (or the way to it) may be back on the next attempt.
            return AttemptResult(Verdict.RETRY, None, time.perf_counter() - started,
                                 f"{type(error).__name__}: {error}"[:300])
        latency = time.perf_counter() - started
        error_text = f"HTTP {status}" + (f": {detail[:200]}" if detail else "")
        if 300 <= status < 400:
            error_text += " (redirects are not followed)"
        return AttemptResult(verdict, status, latency, error_text, retry_after)
