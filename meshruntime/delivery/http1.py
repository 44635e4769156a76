"""A small HTTP/1.1 client for webhook pushes: keep-alive pools, TLS, and nothing else.

Why not aiohttp's client: a push is one POST with a small body and a small answer, thousands
of times a second, and aiohttp's client spends about 300 µs of CPU on each (request and
response objects, cookie jar, tracing hooks, redirects, multidicts); this one spends about 50.
At loopback speeds that is the difference between delivery keeping up with publishing or not.

What it does: ``POST`` with ``Content-Length``; reads the status, the headers and the body
(``Content-Length``, ``chunked``, or until close); keeps the connection for the next request
when HTTP/1.1 allows; one silent retry on a fresh connection when a pooled one turns out to have
been closed by the server before it answered anything (the usual keep-alive race). No redirects,
no cookies, no proxies, no compression, no HTTP/2: a webhook receiver needs none of them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HttpError", "HttpResponse", "Http1Client", "InvalidUrl"]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a longer answer is not read: the connection is closed instead
IDLE_SECONDS = 30.0  # a pooled connection unused this long is closed rather than reused


class HttpError(Exception):
    """The exchange failed without a usable response: refused, reset, cut off, malformed."""


class InvalidUrl(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last value wins
    body: bytes  # at most MAX_BODY_BYTES; truncated when the response was longer


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    target: str  # path and query
    host_header: str


class _Connection:
    __slots__ = ("reader", "writer", "used_at")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used_at = time.monotonic()

    def usable(self, now: float) -> bool:
        return (not self.writer.is_closing() and not self.reader.at_eof()
                and now - self.used_at < IDLE_SECONDS)

    def close(self) -> None:
        self.writer.close()


class _Retry(Exception):
    """A pooled connection was closed before any answer: try once more on a new one."""


class Http1Client:
    def __init__(self, *, user_agent: str = "meshruntime", ssl_context: ssl.SSLContext | None = None) -> None:
        self.user_agent = user_agent
        self._ssl = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._closed = False

    def _origin(self, url: str) -> _Origin:
        origin = self._origins.get(url)
        if origin is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidUrl(f"{url!r} is not an http(s) URL")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError as error:
                raise InvalidUrl(f"{url!r}: {error}") from None
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.hostname
            default = (parts.scheme, port) in (("http", 80), ("https", 443))
            bracketed = f"[{host}]" if ":" in host else host
            origin = _Origin(parts.scheme, host, port, target, bracketed if default else f"{bracketed}:{port}")
            if len(self._origins) > 10_000:
                self._origins.clear()
            self._origins[url] = origin
        return origin

    async def post(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> HttpResponse:
        """POST ``body``; raises :class:`HttpError`, :class:`InvalidUrl` or :class:`TimeoutError`."""
        origin = self._origin(url)
        head = [f"POST {origin.target} HTTP/1.1\r\nHost: {origin.host_header}\r\nUser-Agent: {self.user_agent}"
                f"\r\nContent-Length: {len(body)}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise HttpError(f"header {name} contains a line break")
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        request = "".join(head).encode("latin-1") + body
        # asyncio.timeout() with less bookkeeping: this runs for every event
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            try:
                return await self._exchange(origin, request, reuse=True)
            except _Retry:
                return await self._exchange(origin, request, reuse=False)
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError(f"no answer within {timeout} s") from None
            raise
        finally:
            handle.cancel()

    async def _exchange(self, origin: _Origin, request: bytes, *, reuse: bool) -> HttpResponse:
        key = (origin.scheme, origin.host, origin.port)
        connection, pooled = None, False
        if reuse:
            idle = self._idle.get(key)
            now = time.monotonic()
            while idle:
                candidate = idle.pop()
                if candidate.usable(now):
                    connection, pooled = candidate, True
                    break
                candidate.close()
        if connection is None:
            connection = await self._connect(origin)
        keep = False
        try:
            response, keep = await self._send(connection, request, pooled)
            return response
        finally:
            if keep and not self._closed:
                connection.used_at = time.monotonic()
                self._idle.setdefault(key, deque()).append(connection)
            else:
                connection.close()

    async def _connect(self, origin: _Origin) -> _Connection:
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            reader, writer = await asyncio.open_connection(
                origin.host, origin.port, ssl=context, limit=MAX_HEAD_BYTES,
                server_hostname=origin.host if context else None)
        except (OSError, ssl.SSLError) as error:
            raise HttpError(f"cannot connect to {origin.host}:{origin.port}: {error}") from error
        return _Connection(reader, writer)

    async def _send(self, connection: _Connection, request: bytes, pooled: bool) -> tuple[HttpResponse, bool]:
        reader, writer = connection.reader, connection.writer
        try:
            writer.write(request)
            await writer.drain()
            while True:  # skip 1xx informational answers
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as error:
                    if pooled and not error.partial:
                        raise _Retry from None
                    raise HttpError("the server closed the connection without answering") from None
                status, version, headers = _parse_head(head)
                if status >= 200:
                    break
            if status in (204, 304):
                body, complete = b"", True
            else:
                body, complete = await _read_body(reader, headers)
        except asyncio.LimitOverrunError:
            raise HttpError(f"the response head is longer than {MAX_HEAD_BYTES} bytes") from None
        except (ConnectionError, OSError, ssl.SSLError) as error:
            if pooled and isinstance(error, ConnectionResetError | BrokenPipeError):
                raise _Retry from None
            raise HttpError(f"{type(error).__name__}: {error}") from error
        connection_header = headers.get("connection", "").lower()
        keep = complete and version == "HTTP/1.1" and "close" not in connection_header
        return HttpResponse(status, headers, body), keep

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"malformed response header: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(code), version, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body, and whether it was read whole (so that the connection can be reused)."""
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                length = int(line.split(b";", 1)[0].strip(), 16)
                if length == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    return b"".join(parts), True
                size += length
                if size > MAX_BODY_BYTES:
                    return b"".join(parts), False
                parts.append(await reader.readexactly(length))
                await reader.readexactly(2)
        length_header = headers.get("content-length")
        if length_header is not None:
            length = int(length_header)
            if length > MAX_BODY_BYTES:
                return await reader.read(MAX_BODY_BYTES), False
            return await reader.readexactly(length), True
        parts = []  # no length given: the body runs until the server closes the connection
        size = 0
        while size < MAX_BODY_BYTES:
            part = await reader.read(MAX_BODY_BYTES - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
        return b"".join(parts), False
    except (ValueError, asyncio.IncompleteReadError) as error:
        raise HttpError(f"the response body is malformed or cut off: {error}") from None
