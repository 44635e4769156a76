"""The runtime's HTTP/1.1 server: httptools' parser under an asyncio protocol, no task per request.

Why not a framework: a single-event publish is a few microseconds of the runtime's own work
(authenticate, check, queue the append), and aiohttp's server spent several times that around it
(request and response objects, the header machinery, a handler coroutine per request); uvicorn
was no faster (a task per request, ASGI messages). ``benchmarks/http_stack.py`` keeps the
difference measured: this server and aiohttp's, on the same handler, in the same run.

Here a request is parsed by httptools (llhttp, Node.js's parser), given whole to one handler,
and answered with one write. A handler returns its :class:`Response` at once, or an
``asyncio.Future`` of one (a publish waiting for its append: no task), or a coroutine when it
has real waiting to do (it runs as a task).

What HTTP/1.1 asks of a server, and what it does about it:

- keep-alive by default; ``Connection: close`` and HTTP/1.0 close after the response;
- pipelined requests are answered in order, one at a time per connection;
- ``Expect: 100-continue`` gets its interim ``100 Continue`` when the body is wanted;
- request bodies with ``Content-Length`` or chunked; a body over ``max_body`` is refused and
  the connection closed: ``on_too_large(length or None, headers)`` words the answer (413, or
  an earlier refusal that the headers already decide, such as 401);
- a malformed request gets 400, a head over ``MAX_HEAD_BYTES`` 431, and the connection is closed;
- ``HEAD`` gets the headers of the ``GET`` answer and no body; every answer carries ``Date``;
- back-pressure: no new request is started while the client does not read its answers, and
  reading pauses while requests queue up;
- connections idle (or stalled mid-request) longer than ``keepalive_timeout`` are closed;
- a request's head (request line and headers) must arrive whole within ``head_timeout`` of its
  first byte, or the client gets 408 and the connection is closed: a client trickling header
  bytes keeps the connection from ever being idle, so the keep-alive timeout alone would let it
  hold a connection for as long as it likes;
- :meth:`HttpServer.shutdown` stops accepting and answers every request that has arrived, the
  ones still in the socket's buffer and half-read ones included: the answer after which nothing
  more has arrived says ``Connection: close``. A connection idle at that moment is kept open for
  ``shutdown_grace`` seconds, so that a request already on its way is answered too rather than
  reset. Then each connection is half-closed and what the client may still send is read and
  dropped for a while (a lingering close), never reset; what is left after the timeout is aborted.

A client that goes away does not cancel its request: an append that was started completes, and
only the answer is dropped (the same as a response lost in the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import struct
import termios
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
import orjson
from multidict import CIMultiDict

log = logging.getLogger(__name__)

__all__ = ["HttpServer", "Request", "Response", "error_response"]

JSON = "application/json"
MAX_QUEUED = 16  # complete requests waiting on one connection before reading pauses
MAX_HEAD_BYTES = 64 * 1024  # request line and headers of one request
LINGER_SECONDS = 2.0  # how long a refused client's remaining input is read and dropped
SHUTDOWN_GRACE = 0.5  # how long shutdown keeps an idle connection open for a request on its way


class Request:
    """One request, body included (the server reads it whole before the handler runs)."""

    __slots__ = ("method", "path", "query_string", "headers", "body", "remote", "http_version")

    def __init__(self, method: str, path: str, query_string: str, headers: CIMultiDict[str], body: bytes,
                 remote: str | None, http_version: str = "1.1") -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers  # case-insensitive, values decoded as UTF-8 (surrogateescape)
        self.body = body
        self.remote = remote
        self.http_version = http_version

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters (``application/octet-stream`` if none)."""
        raw = self.headers.get("Content-Type")
        if not raw:
            return "application/octet-stream"
        return raw.partition(";")[0].strip().lower()

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


class Response:
    """Status, body and headers; ``Content-Length``, ``Date`` and ``Connection`` are the server's."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str = JSON,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    @classmethod
    def json(cls, status: int, value: Any, headers: Mapping[str, str] | None = None) -> Response:
        return cls(status, orjson.dumps(value), JSON, headers)

    def encode(self, date: bytes, *, close: bool, head_only: bool = False) -> bytes:
        extra = b""
        if self.headers:
            extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items()).encode("latin-1")
        head = b"%sContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n%s%s\r\n" % (
            _status_line(self.status), self.content_type.encode("latin-1"), len(self.body), date, extra,
            b"Connection: close\r\n" if close else b"")
        return head if head_only else head + self.body


Result = Response | asyncio.Future | Coroutine[Any, Any, Response]
Handler = Callable[[Request], Result]

_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
    return line


def error_response(status: int, error: str, message: str) -> Response:
    """The JSON error every refusal of the runtime answers with."""
    return Response.json(status, {"error": error, "status": status, "message": message})


def _unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for ``transport`` that have not been read yet (FIONREAD)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4)))[0]
    except (OSError, ValueError):  # closed meanwhile: nothing more will be read
        return 0


def _head_too_large() -> Response:
    return error_response(431, "header_too_large", f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")


INTERNAL_ERROR = error_response(500, "internal", "the runtime failed on this request; its log says why")


class _Protocol(asyncio.Protocol):
    """One connection: parse, queue complete requests, answer them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.queue: deque[tuple[Request, bool] | Response] = deque()
        self.current: asyncio.Future | None = None  # the answer being waited for
        self.closing = False  # close once what has arrived has been answered
        self.eof = False  # the client sends no more (a half-close)
        self.last_active = self.loop.time()
        self.reading_paused = False
        self.writing_paused = False
        self.discarding = False  # a request was refused mid-way: ignore the rest of the stream
        # the request being parsed
        self.in_message = False
        self.continue_wanted = False  # the request being parsed asked for "100 Continue"
        self.url = b""
        self.header_list: list[tuple[str, str]] = []
        self.headers: CIMultiDict[str] | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.head_size = 0  # request line and header fields parsed so far
        self.head_bytes = 0  # bytes received since the last complete head
        self.head_started: float | None = None  # when the first byte of the head being parsed came
        self.answered_at = self.last_active  # a pipelined head's clock runs from its turn

    # -- connection -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self.server.connections.add(self)
        if self.server.closing:
            self.closing = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()
        self.server.connections.discard(self)
        self.server.connection_closed()

    def eof_received(self) -> bool:
        """The client will send no more (a half-close): answer what it sent, then close."""
        self.closing = self.eof = True
        return self.current is not None or bool(self.queue)  # True keeps the transport open

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()
        self._next()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None:
            return
        pause = self.writing_paused or len(self.queue) >= MAX_QUEUED
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        self.last_active = self.loop.time()
        if self.headers is None:  # in (or before) a head: bound what the parser may buffer
            self.head_bytes += len(data)
        try:
            if self.head_bytes > 4 * MAX_HEAD_BYTES:  # one field without end; on_header checks exactly
                self._refuse(_head_too_large())
            else:
                self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closing = True  # no protocol switching here: answer what came before, then close
            self.discarding = True
        except httptools.HttpParserError as error:
            self._refuse(error_response(400, "bad_request", f"malformed HTTP request: {error}"))
        if self.queue and self.current is None:
            self._next()
        elif self.closing:
            self.close_if_idle()  # bytes that made no request (a stray CRLF) on a closing connection

    def idle_for(self, now: float) -> float:
        """Seconds since the client last sent anything while nothing of its is being answered."""
        if self.current is not None or self.queue:
            return 0.0
        return now - self.last_active

    def head_overdue(self, now: float, timeout: float) -> bool:
        """A head has been arriving for longer than ``timeout`` while the server waits for it.

        Its clock starts at its first byte, or when the request before it was answered if it came
        while that one was in progress (a pipelined head waits for its turn, not the client).
        """
        if self.head_started is None or self.current is not None or self.queue or self.discarding:
            return False
        return now - max(self.head_started, self.answered_at) > timeout

    def refuse_slow_head(self) -> None:
        self._refuse(error_response(408, "request_timeout", f"the request line and headers did not arrive "
                                                            f"within {self.server.head_timeout:g} s"))
        self._next()

    def more_coming(self) -> bool:
        """Whether the client has sent more than has been parsed: a request half-read, or bytes
        in the socket's buffer (reading paused, or not read yet)."""
        if self.discarding or self.eof or self.transport is None:
            return False
        return self.in_message or _unread_bytes(self.transport) > 0

    def close_if_idle(self) -> None:
        """On shutdown, after the grace: close if nothing has arrived that is not answered."""
        transport = self.transport
        if (transport is not None and self.server.grace_over and self.current is None and not self.queue
                and not self.more_coming()):
            self._close_lingering(transport)

    # -- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_message = True
        self.continue_wanted = False
        self.url = b""
        self.header_list = []
        self.headers = None
        self.body = []
        self.size = 0
        self.head_size = 0
        self.head_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD_BYTES:
            if not self.discarding:
                self._refuse(_head_too_large())
            return
        self.header_list.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        self.head_started = None
        if self.discarding:
            return
        headers = self.headers = CIMultiDict(self.header_list)
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            self._refuse(self.server.on_too_large(int(length), headers))
            return
        expect = headers.get("Expect")
        if expect is not None and expect.lower() == "100-continue":
            # Sent once the requests before this one are answered, or it would come first.
            self.continue_wanted = True
            self._send_continue()

    def on_body(self, body: bytes) -> None:
        if self.discarding:
            return
        self.size += len(body)
        if self.size > self.server.max_body:
            self._refuse(self.server.on_too_large(None, self.headers or CIMultiDict()))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.discarding:
            return
        path, _, query = self.url.partition(b"?")
        path_text = path.decode("utf-8", "surrogateescape")
        if "%" in path_text:
            path_text = unquote(path_text)
        body = self.body
        request = Request(self.parser.get_method().decode("ascii"), path_text, query.decode("latin-1"),
                          self.headers if self.headers is not None else CIMultiDict(),
                          body[0] if len(body) == 1 else b"".join(body), self.remote,
                          self.parser.get_http_version())
        self.queue.append((request, self.parser.should_keep_alive()))
        if len(self.queue) >= MAX_QUEUED:
            self._update_reading()

    def _refuse(self, response: Response) -> None:
        """Answer (after what is queued) and close; whatever else the client sends is ignored."""
        self.discarding = True
        self.closing = True
        self.queue.append(response)

    # -- answering ------------------------------------------------------------------------------
    def _next(self) -> None:
        """Answer queued requests in order until one has to wait."""
        queue = self.queue
        while queue and self.current is None and not self.writing_paused and self.transport is not None:
            item = queue.popleft()
            if isinstance(item, Response):  # refused by the server itself
                self._write(item, close=True)
                return
            request, keep_alive = item
            try:
                result = self.server.handler(request)
            except Exception:
                log.exception("handler failed on %s %s", request.method, request.path)
                result = INTERNAL_ERROR
            if isinstance(result, Response):
                self._write(result, close=not keep_alive, head_only=request.method == "HEAD")
                continue
            if not isinstance(result, asyncio.Future):
                result = self.loop.create_task(result)
            self.current = result
            result.add_done_callback(lambda future, r=request, k=keep_alive: self._answered(future, r, k))
            return
        if self.reading_paused:
            self._update_reading()
        if self.continue_wanted:
            self._send_continue()

    def _send_continue(self) -> None:
        if self.current is None and not self.queue and self.transport is not None:
            self.continue_wanted = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _answered(self, future: asyncio.Future, request: Request, keep_alive: bool) -> None:
        self.current = None
        self.last_active = self.answered_at = self.loop.time()  # idle from now, not from the request
        if future.cancelled():
            response = error_response(503, "shutting_down", "the request was cancelled; retry it")
        elif future.exception() is not None:
            log.error("handler failed on %s %s", request.method, request.path, exc_info=future.exception())
            response = INTERNAL_ERROR
        else:
            response = future.result()
        if self.transport is None:  # the client went away; the work was done all the same
            return
        self._write(response, close=not keep_alive, head_only=request.method == "HEAD")
        self._next()

    def _write(self, response: Response, *, close: bool, head_only: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        # Closing (a shutdown, a half-close, a refusal): the last answer says so, the last being
        # the one after which nothing more has arrived, so that no request is cut off unanswered.
        close = close or (self.closing and not self.queue and not self.more_coming())
        transport.write(response.encode(self.server.date(), close=close, head_only=head_only))
        if close:
            self.queue.clear()
            if (self.discarding or self.closing) and not self.eof:
                self._close_lingering(transport)
            else:
                transport.close()  # after the buffered answer has been sent

    def _close_lingering(self, transport: asyncio.Transport) -> None:
        """Half-close, then read and drop what the client still sends for a while (a "lingering
        close"): the reset that closing on unread data causes could destroy the answers before
        the client reads them, and a client whose request crosses the close gets an end of
        stream it can retry on, not a reset."""
        self.discarding = True
        if not transport.can_write_eof():
            transport.close()
            return
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)


class HttpServer:
    """Serves ``handler`` on a TCP port; see the module's docstring for what it guarantees."""

    def __init__(self, handler: Handler, *, max_body: int,
                 on_too_large: Callable[[int | None, CIMultiDict[str]], Response] | None = None,
                 keepalive_timeout: float = 75.0, head_timeout: float = 10.0,
                 shutdown_grace: float = SHUTDOWN_GRACE) -> None:
        self.handler = handler
        self.max_body = max_body
        self.on_too_large = on_too_large or self._too_large
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.connections: set[_Protocol] = set()
        self.closing = False
        self.shutdown_grace = shutdown_grace
        self.grace_over = False  # shutdown has waited ``shutdown_grace``: idle connections close
        self.loop: asyncio.AbstractEventLoop | None = None  # type: ignore[assignment]
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self._all_closed: asyncio.Event | None = None
        self._date_second = -1
        self._date = b""

    def _too_large(self, length: int | None, headers: CIMultiDict[str]) -> Response:
        size = f"{length} bytes" if length is not None else "longer"
        return error_response(413, "too_large", f"the request body is {size}; the limit is {self.max_body} bytes")

    def date(self) -> bytes:
        """The ``Date`` header's value, formatted once a second."""
        now = time.time()
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(now, usegmt=True).encode("ascii")
        return self._date

    async def start(self, host: str, port: int, *, backlog: int = 2048) -> tuple[str, int]:
        """Listen; returns the address really bound (``port=0`` picks a free one)."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: _Protocol(self), host, port, backlog=backlog,
                                                     reuse_address=True)
        self._sweeper = self.loop.create_task(self._sweep())
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def _sweep(self) -> None:
        """Sweep the connections every few seconds (one timer for all)."""
        interval = min(5.0, self.keepalive_timeout / 2, self.head_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            self.sweep(self.loop.time())

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the keep-alive timeout; answer 408 to those whose
        head is overdue."""
        for connection in list(self.connections):
            if connection.transport is None:
                continue
            if connection.head_overdue(now, self.head_timeout):
                connection.refuse_slow_head()
            elif connection.idle_for(now) > self.keepalive_timeout:
                connection.transport.close()

    def connection_closed(self) -> None:
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, answer every request that has arrived, close; abort what is left after
        ``timeout`` seconds. An idle connection gets ``shutdown_grace`` seconds for a request on
        its way (answered with ``Connection: close``), then is closed."""
        if self._server is None:
            return
        self.closing = True
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            connection.closing = True
        if self.connections:
            try:
                async with asyncio.timeout(timeout):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.shutdown_grace):
                            await self._all_closed.wait()
                    self.grace_over = True
                    for connection in list(self.connections):
                        connection.close_if_idle()
                    await self._all_closed.wait()
            except TimeoutError:
                log.warning("%d connections still busy after %.0f s; closing them", len(self.connections), timeout)
                for connection in list(self.connections):
                    if connection.transport is not None:
                        connection.transport.abort()
        await self._server.wait_closed()
        self._server = None
