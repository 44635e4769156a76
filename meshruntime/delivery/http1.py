"""A small HTTP/1.1 client for webhook pushes: keep-alive pools, TLS, and nothing else.

Why not aiohttp's client: a push is one POST with a small body and a small answer, thousands
of times a second, and aiohttp's client spends many times this one's CPU on each (request and
response objects, cookie jar, tracing hooks, redirects); at loopback speeds that is the
difference between delivery keeping up with publishing or not (``benchmarks/http_stack.py``
measures the two side by side). Each connection is an :class:`asyncio.Protocol` that feeds the
answer's bytes to httptools' response parser (llhttp, the one the runtime's server uses for
requests) as they arrive and wakes the waiting push once: no stream reader in between, with its
buffer, a future per read and a wake-up per read.

What it does: ``POST`` with ``Content-Length`` (and ``GET``); reads the status, the headers and
the body (``Content-Length``, ``chunked``, or until close); keeps the connection for the next
request when HTTP/1.1 allows; one silent retry on a fresh connection when a pooled one turns out
to have been closed by the server before it answered anything (the usual keep-alive race). No
redirects, no cookies, no proxies, no compression, no HTTP/2, no pipelining: a webhook receiver
needs none of them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import httptools

from meshruntime.deadlines import Deadlines

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
    key: tuple[str, str, int]  # the pool's key
    post: bytes  # "POST <target> HTTP/1.1", Host and User-Agent, ending in "Content-Length: "
    get: bytes  # "GET <target> HTTP/1.1", Host and User-Agent


class _Retry(Exception):
    """A pooled connection was closed before any answer: try once more on a new one."""


class _Stop(Exception):
    """Raised in a parser callback to stop parsing: the answer is settled (see ``_failure``/``_cut``)."""


# What a request is told when it ends: the response, or the error (exactly one of them is None)
Done = Callable[[HttpResponse | None, BaseException | None], None]

# Header names as they arrive (bytes) and as responses name them (lower-case text): a receiver
# sends the same few names on every answer.
_NAMES: dict[bytes, str] = {}


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time."""

    def __init__(self, client: Http1Client, origin: _Origin) -> None:
        self.client = client
        self.origin = origin
        self.key = origin.key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.used_at = time.monotonic()
        self.pooled = False  # has answered before: a close before any answer may be the keep-alive race
        self.lost = False
        self._done: Done | None = None
        self._retry = False
        self._request = b""
        self.deadline = 0.0  # of the request under way, on the loop's clock
        self._timeout = 0.0
        # the answer under way (see start)
        self._received = False  # any byte of it
        self._head_bytes = 0  # bytes received while its head was incomplete
        self._head_size = 0  # of its header fields, as parsed
        self._in_head = True  # its final (non-1xx) head is not complete yet
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._keep = False  # HTTP/1.1 and no "Connection: close"
        self._until_close = False  # no length: the body ends with the connection
        self._too_long = False  # its Content-Length is over MAX_BODY_BYTES
        self._complete = False
        self._cut = False  # its body was cut at MAX_BODY_BYTES
        self._rest = False  # the server sent more than the answer
        self._failure: HttpError | None = None  # found by a parser callback

    # -- the client's side -----------------------------------------------------------------------
    def usable(self, now: float) -> bool:
        return not self.lost and not self.transport.is_closing() and now - self.used_at < IDLE_SECONDS

    def start(self, loop: asyncio.AbstractEventLoop, request: bytes, deadline: float, timeout: float,
              done: Done, *, retry: bool = False) -> None:
        """Send ``request``; ``done`` is called once, with the answer or why there is none. With
        ``retry``, the keep-alive race (see :class:`_Retry`) is retried on a new connection here;
        without, ``done`` hears of it."""
        self._done = done
        self._retry = retry
        self._request = request
        self._timeout = timeout
        self.client._deadlines.watch(self, loop, deadline)  # noqa: SLF001 - the client's timer
        self._received = False
        self._head_bytes = self._head_size = self._size = 0
        self._headers = {}
        self._body = []
        self._in_head = True
        self._until_close = self._too_long = self._complete = self._cut = self._rest = False
        self._failure = None
        self.transport.write(request)

    def abandon(self) -> None:
        """The asker gave up (cancelled): no answer is awaited, and the connection cannot be reused."""
        if self._done is not None:
            self._done = None
            self.client._deadlines.discard(self)  # noqa: SLF001
        self.close()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def expire(self) -> None:
        self._settle(None, TimeoutError(f"no answer within {self._timeout} s"))

    def _settle(self, response: HttpResponse | None, error: BaseException | None) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        self.client._deadlines.discard(self)  # noqa: SLF001
        self._body = []
        if response is not None and not self.lost:
            self.client._release(self)  # noqa: SLF001 - the pool is the client's
        else:
            self.close()  # failed, timed out, or not to be kept: its state is unknown
        request, self._request = self._request, b""
        if error.__class__ is _Retry and self._retry:
            self.client._in_task(self.origin, request, self.deadline, self._timeout, done)  # noqa: SLF001
        else:
            done(response, error)

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._done is None:
            # nothing asked (or the asker gave up): an answer out of turn, not a connection to reuse
            self.close()
            return
        self._received = True
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if self._failure is not None or not (self._complete or self._cut):
                self._settle(None, self._failure or HttpError(f"the response could not be read: {error.__context__!r}"))
                return
        except httptools.HttpParserUpgrade:
            if not self._complete:
                self._settle(None, HttpError("the server switched protocols instead of answering"))
                return
            self._rest = True
        except httptools.HttpParserError as error:
            if not self._complete:
                self._settle(None, self._malformed(error))
                return
            self._rest = True  # bytes after the answer (or after its "Connection: close")
        if self._complete or self._cut:
            self._finish()
        elif self._in_head and self._head_bytes > MAX_HEAD_BYTES:  # a field without end
            self._settle(None, HttpError(f"the response head is longer than {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool:
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    # -- httptools' callbacks ----------------------------------------------------------------------
    # They run for every answer: they do as little as they can.
    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request
            self._rest = True
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD_BYTES:
            self._failure = HttpError(f"the response head is longer than {MAX_HEAD_BYTES} bytes")
            raise _Stop
        text = _NAMES.get(name)
        if text is None:
            text = name.decode("latin-1").lower()
            if len(_NAMES) < 256:
                _NAMES[name] = text
        self._headers[text] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = self._status = parser.get_status_code()
        if status < 200:
            return  # informational: skipped, the answer follows (see on_message_complete)
        self._in_head = False
        headers = self._headers
        # kept: HTTP/1.1 without "Connection: close" (llhttp would keep HTTP/1.0 with keep-alive too)
        self._keep = parser.should_keep_alive() and ("connection" not in headers
                                                     or parser.get_http_version() == "1.1")
        length = headers.get("content-length")  # llhttp has checked its digits
        if length is None:
            self._until_close = (status != 204 and status != 304
                                 and "chunked" not in headers.get("transfer-encoding", "").lower())
        else:
            self._too_long = int(length) > MAX_BODY_BYTES

    def on_body(self, body: bytes) -> None:
        size = self._size + len(body)
        if size > MAX_BODY_BYTES or self._too_long:
            # what has come of a body too long to read: the connection goes
            self._body.append(body[:MAX_BODY_BYTES - self._size])
            self._cut = True
            raise _Stop
        self._size = size
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status >= 200:
            self._complete = True
        else:  # the informational answer is forgotten
            self._headers = {}
            self._head_size = 0

    # -- the answer --------------------------------------------------------------------------------
    def _malformed(self, error: httptools.HttpParserError) -> HttpError:
        if self.parser.get_status_code() == 0:  # not even a status line
            return HttpError(f"not an HTTP/1.x response: {error}")
        return HttpError(f"the response is malformed: {error}")

    def _finish(self) -> None:
        body = self._body
        if not (self._complete and self._keep) or self._rest:
            self.close()
        self._settle(HttpResponse(self._status, self._headers, body[0] if len(body) == 1 else b"".join(body)),
                     None)

    def _end(self, exc: Exception | None) -> None:
        """The server closed the connection (or it broke): what it means for the answer under way."""
        self.lost = True
        if self._done is None:
            return
        if self._until_close and not self._in_head and exc is None:
            self._complete = True  # its body ends here
            self._finish()
        elif self.pooled and not self._received and (exc is None or isinstance(
                exc, ConnectionResetError | BrokenPipeError)):
            self._settle(None, _Retry())
        elif exc is not None:
            self._settle(None, HttpError(f"{type(exc).__name__}: {exc}"))
        elif self._in_head:
            self._settle(None, HttpError("the server closed the connection without answering"))
        else:
            self._settle(None, HttpError("the response body is malformed or cut off: the connection was closed"))


class Http1Client:
    def __init__(self, *, user_agent: str = "meshruntime", ssl_context: ssl.SSLContext | None = None) -> None:
        self.user_agent = user_agent
        self._ssl = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tasks: set[asyncio.Task] = set()  # sends that wait for a new connection
        self._deadlines = Deadlines()  # of the requests under way: one timer for all
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
            host_header = bracketed if default else f"{bracketed}:{port}"
            if any(c in f"{target}{host_header}" for c in "\r\n"):
                raise InvalidUrl(f"{url!r} contains a line break")
            line = f" {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {self.user_agent}\r\n"
            origin = _Origin(parts.scheme, host, port, (parts.scheme, host, port),
                             f"POST{line}Content-Length: ".encode("latin-1"), f"GET{line}".encode("latin-1"))
            if len(self._origins) > 10_000:
                self._origins.clear()
            self._origins[url] = origin
        return origin

    def send(self, url: str, headers: dict[str, str], body: bytes, timeout: float, done: Done) -> None:
        """POST ``body`` and call ``done(response, error)`` once it is over (never before this
        returns). The error is :class:`HttpError`, :class:`InvalidUrl` or :class:`TimeoutError`.

        The way of the delivery engine: on a pooled connection, the answer's bytes call ``done``
        straight from the connection, with no task and no future in between."""
        loop = asyncio.get_running_loop()
        try:
            origin = self._origin(url)
            request = _request(origin, headers, body)
        except (InvalidUrl, HttpError) as error:
            loop.call_soon(done, None, error)
            return
        deadline = loop.time() + timeout
        connection = self._take_idle(origin)
        if connection is None:
            self._in_task(origin, request, deadline, timeout, done)
        else:
            connection.start(loop, request, deadline, timeout, done, retry=True)

    def _in_task(self, origin: _Origin, request: bytes, deadline: float, timeout: float, done: Done) -> None:
        """Send on a new connection (connecting takes a task)."""
        async def exchange() -> None:
            try:
                response = await self._exchange(loop, origin, request, deadline, timeout, reuse=False)
            except (HttpError, TimeoutError) as error:
                done(None, error)
            except BaseException as error:  # cancelled at shutdown (or a bug): the push must hear of it
                done(None, HttpError(f"{type(error).__name__}: {error}"))
                raise
            else:
                done(response, None)

        loop = asyncio.get_running_loop()
        task = loop.create_task(exchange())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> HttpResponse:
        """POST ``body``; raises :class:`HttpError`, :class:`InvalidUrl` or :class:`TimeoutError`."""
        origin = self._origin(url)
        return await self._call(origin, _request(origin, headers, body), timeout)

    async def get(self, url: str, timeout: float, headers: dict[str, str] | None = None) -> HttpResponse:
        """GET ``url``; raises as :meth:`post` does."""
        origin = self._origin(url)
        return await self._call(origin, origin.get + _header_lines(headers or {}) + b"\r\n", timeout)

    async def _call(self, origin: _Origin, request: bytes, timeout: float) -> HttpResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            return await self._exchange(loop, origin, request, deadline, timeout, reuse=True)
        except _Retry:
            return await self._exchange(loop, origin, request, deadline, timeout, reuse=False)

    async def _exchange(self, loop: asyncio.AbstractEventLoop, origin: _Origin, request: bytes, deadline: float,
                        timeout: float, *, reuse: bool) -> HttpResponse:
        connection = self._take_idle(origin) if reuse else None
        if connection is None:
            connection = await self._connect(origin, deadline - loop.time(), timeout)
        answer = loop.create_future()
        connection.start(loop, request, deadline, timeout, partial(_resolve, answer))
        try:
            return await answer
        except asyncio.CancelledError:
            connection.abandon()
            raise

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin.key)
        if idle:
            now = time.monotonic()
            while idle:
                candidate = idle.pop()
                if candidate.usable(now):
                    return candidate
                candidate.close()
        return None

    def _release(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
            return
        connection.used_at = time.monotonic()
        connection.pooled = True
        idle = self._idle.get(connection.key)
        if idle is None:
            idle = self._idle[connection.key] = []
        idle.append(connection)

    async def _connect(self, origin: _Origin, remaining: float, timeout: float) -> _Connection:
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(self, origin), origin.host, origin.port, ssl=context,
                    server_hostname=origin.host if context else None)
        except TimeoutError:
            raise TimeoutError(f"no answer within {timeout} s") from None
        except (OSError, ssl.SSLError) as error:
            raise HttpError(f"cannot connect to {origin.host}:{origin.port}: {error}") from error
        return connection

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _request(origin: _Origin, headers: dict[str, str], body: bytes) -> bytes:
    return b"%s%d\r\n%s\r\n%s" % (origin.post, len(body), _header_lines(headers), body)


def _header_lines(headers: dict[str, str]) -> bytes:
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    # each header adds exactly one CR and one LF, unless a name or a value carries one more
    if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
        bad = next(name for name, value in headers.items() if any(c in f"{name}{value}" for c in "\r\n"))
        raise HttpError(f"header {bad} contains a line break")
    return lines.encode("latin-1")


def _resolve(answer: asyncio.Future, response: HttpResponse | None, error: BaseException | None) -> None:
    if answer.done():
        return
    if error is None:
        answer.set_result(response)
    else:
        answer.set_exception(error)
