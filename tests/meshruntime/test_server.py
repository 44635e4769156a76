"""The runtime's HTTP/1.1 server (meshruntime.server) over real TCP connections.

The client side is raw bytes on a socket, so that each test says exactly what goes over the wire
(pipelining, 100-continue, chunked bodies, malformed requests), which a client library hides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest

from meshruntime.__main__ import build_parser, settings_from_args
from meshruntime.server import HttpServer, Request, Response
from tests.portal_support.waiting import until


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    return status, headers, await reader.readexactly(length)


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (EOF within a few seconds)."""
    async with asyncio.timeout(5):
        return await reader.read() == b""


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"POST {path} HTTP/{version}\r\nHost: t\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def echo(request: Request) -> Response:
    """Answers with what it got, so that a test can see how the request was read."""
    return Response.json(200, {"method": request.method, "path": request.path, "query": request.query_string,
                               "body": request.body.decode(), "type": request.content_type,
                               "remote": request.remote, "x": request.headers.get("X-Test")})


@contextlib.asynccontextmanager
async def served(handler, **kwargs) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(handler, max_body=kwargs.pop("max_body", 1000), **kwargs)
    _host, port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.shutdown(timeout=5)


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def test_it_keeps_the_connection_for_the_next_request_and_reads_the_request_whole():
    async with served(echo) as (_server, port), connection(port) as (reader, writer):
        writer.write(post("/v1/t%C3%A9st?a=1", b'{"x": 1}', "Content-Type: Application/JSON; charset=utf-8",
                          "X-Test: one"))
        status, headers, body = await read_response(reader)
        assert status == 200 and headers["content-type"] == "application/json" and "date" in headers
        assert "connection" not in headers
        assert orjson.loads(body) == {"method": "POST", "path": "/v1/tést", "query": "a=1", "body": '{"x": 1}',
                                      "type": "application/json", "remote": "127.0.0.1", "x": "one"}
        writer.write(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _headers, body = await read_response(reader)
        assert status == 200 and orjson.loads(body)["path"] == "/again"


@pytest.mark.parametrize("request_bytes", [
    post("/", b"", "Connection: close"),
    post("/", b"", version="1.0"),
])
async def test_it_closes_after_the_answer_when_the_client_asks_or_speaks_http_1_0(request_bytes):
    async with served(echo) as (_server, port), connection(port) as (reader, writer):
        writer.write(request_bytes)
        status, headers, _body = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed(reader)


async def test_a_client_that_half_closes_after_its_requests_still_gets_the_answers():
    async def later(request: Request) -> Response:
        await asyncio.sleep(0.05)
        return Response(200, request.path.encode())

    async with served(later) as (_server, port), connection(port) as (reader, writer):
        writer.write(post("/a", b"") + post("/b", b""))
        writer.write_eof()
        assert [(await read_response(reader))[2] for _ in range(2)] == [b"/a", b"/b"]
        assert await closed(reader)


async def test_it_answers_pipelined_requests_in_order_even_when_they_finish_out_of_order():
    futures: list[asyncio.Future] = []

    def handler(request: Request):
        future = asyncio.get_running_loop().create_future()
        futures.append((request.path, future))
        return future

    async with served(handler) as (_server, port), connection(port) as (reader, writer):
        writer.write(b"".join(post(f"/{i}", b"") for i in range(3)))
        await until(lambda: futures, "the first request handled")
        # Only the first is being handled: the next waits for its answer to be written.
        assert [path for path, _ in futures] == ["/0"]
        futures[0][1].set_result(Response(200, b"zero"))
        await until(lambda: len(futures) >= 2, "the second request handled")
        futures[1][1].set_result(Response(201, b"one"))
        await until(lambda: len(futures) >= 3, "the third request handled")
        futures[2][1].set_result(Response(202, b"two"))
        answers = [await read_response(reader) for _ in range(3)]
        assert [(s, b) for s, _h, b in answers] == [(200, b"zero"), (201, b"one"), (202, b"two")]


async def test_a_long_pipeline_is_answered_whole_while_reading_pauses_and_resumes():
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0)
        return Response(200, request.path.encode())

    async with served(slow) as (_server, port), connection(port) as (reader, writer):
        writer.write(b"".join(post(f"/{i}", b"x" * 100) for i in range(200)))
        bodies = [(await read_response(reader))[2] for _ in range(200)]
        assert bodies == [f"/{i}".encode() for i in range(200)]


async def test_it_sends_100_continue_when_asked_and_the_body_is_wanted():
    async with served(echo) as (_server, port), connection(port) as (reader, writer):
        writer.write(b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        status, _headers, body = await read_response(reader)
        assert status == 200 and orjson.loads(body)["body"] == "hello"


async def test_a_declared_body_over_the_limit_is_refused_at_once_without_100_continue():
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    async with served(handler, max_body=10) as (_server, port), connection(port) as (reader, writer):
        writer.write(b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 413 and headers["connection"] == "close"
        assert orjson.loads(body) == {"error": "too_large", "status": 413,
                                      "message": "the request body is 11 bytes; the limit is 10 bytes"}
        assert await closed(reader)
    assert seen == []


async def test_a_chunked_body_is_put_together_and_refused_when_it_grows_over_the_limit():
    def chunked(*parts: bytes) -> bytes:
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        return b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    async with served(echo, max_body=10) as (_server, port), connection(port) as (reader, writer):
        writer.write(chunked(b"hello ", b"you"))
        status, _headers, body = await read_response(reader)
        assert status == 200 and orjson.loads(body)["body"] == "hello you"
        writer.write(chunked(b"hello ", b"world"))
        status, headers, body = await read_response(reader)
        assert status == 413 and headers["connection"] == "close"
        assert orjson.loads(body)["message"] == "the request body is longer; the limit is 10 bytes"
        assert await closed(reader)


async def test_the_application_words_the_413():
    def too_large(length, headers) -> Response:
        return Response(413, f"no: {length} {headers['X-Test']}".encode(), "text/plain")

    async with served(echo, max_body=10, on_too_large=too_large) as (_server, port), \
            connection(port) as (reader, writer):
        writer.write(post("/", b"x" * 11, "X-Test: yes"))
        assert (await read_response(reader))[::2] == (413, b"no: 11 yes")


async def test_a_malformed_request_gets_400_and_the_connection_is_closed():
    async with served(echo) as (_server, port), connection(port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert orjson.loads(body)["message"].startswith("malformed HTTP request: ")
        assert await closed(reader)


@pytest.mark.parametrize("head", [
    b"".join(b"X-Many-%d: %s\r\n" % (i, b"v" * 1000) for i in range(80)),  # many fields: 80 KB
    b"X-Endless: " + b"v" * (1024 * 1024),  # one field that never ends
])
async def test_a_head_over_the_limit_gets_431_and_the_connection_is_closed(head):
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    async with served(handler) as (_server, port), connection(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n" + head)
        status, headers, body = await read_response(reader)
        assert status == 431 and headers["connection"] == "close"
        assert orjson.loads(body)["message"] == "the request line and headers exceed 65536 bytes"
        assert await closed(reader)
    assert seen == []


async def test_head_gets_the_headers_of_get_and_no_body():
    async with served(lambda request: Response(200, b"twelve bytes", "text/plain")) as (_server, port), \
            connection(port) as (reader, writer):
        writer.write(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = await read_response(reader, head_only=True)
        assert status == 200 and headers["content-length"] == "12" and body == b""
        status, get_headers, body = await read_response(reader)
        assert (status, get_headers["content-length"], body) == (200, "12", b"twelve bytes")


async def test_a_failing_handler_gets_500_and_the_connection_lives_on(caplog):
    async def failing_later(request: Request) -> Response:
        raise RuntimeError("boom later")

    def handler(request: Request):
        if request.path == "/now":
            raise RuntimeError("boom now")
        if request.path == "/later":
            return failing_later(request)
        return Response(200, b"fine")

    async with served(handler) as (_server, port), connection(port) as (reader, writer):
        for path in ("/now", "/later"):
            writer.write(post(path, b""))
            status, _headers, body = await read_response(reader)
            assert status == 500 and orjson.loads(body)["error"] == "internal"
        writer.write(post("/ok", b""))
        assert (await read_response(reader))[::2] == (200, b"fine")
    assert "boom now" in caplog.text and "boom later" in caplog.text


async def test_a_client_that_goes_away_does_not_cancel_its_request():
    started = asyncio.Event()
    finished = asyncio.Event()

    async def handler(request: Request) -> Response:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()
        return Response(200)

    async with served(handler) as (server, port):
        async with connection(port) as (_reader, writer):
            writer.write(post("/", b""))
            async with asyncio.timeout(5):
                await started.wait()
        async with asyncio.timeout(5):
            await finished.wait()
            while server.connections:
                await asyncio.sleep(0.01)


async def test_idle_connections_are_closed_after_the_keep_alive_timeout():
    async with served(echo, keepalive_timeout=0.2) as (_server, port), connection(port) as (reader, writer):
        writer.write(post("/", b""))
        assert (await read_response(reader))[0] == 200
        assert await closed(reader)


async def test_shutdown_answers_what_it_received_closes_idle_connections_and_stops_accepting():
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        await release.wait()
        return Response(200, b"done")

    server = HttpServer(handler, max_body=100)
    _host, port = await server.start("127.0.0.1", 0)
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_writer.write(post("/", b""))
    await until(lambda: len(server.connections) >= 2 and any(c.current for c in server.connections),
                "two connections, one with a request under way")
    shutdown = asyncio.create_task(server.shutdown(timeout=5))
    assert await closed(idle_reader)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    assert not shutdown.done()
    release.set()
    status, headers, body = await read_response(busy_reader)
    assert (status, body, headers["connection"]) == (200, b"done", "close")
    await asyncio.wait_for(shutdown, 5)
    busy_writer.close()
    idle_writer.close()


async def read_until_closed(reader: asyncio.StreamReader) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response until the server ends the stream; a reset fails the test."""
    answers = []
    async with asyncio.timeout(10):
        while not reader.at_eof():
            try:
                answers.append(await read_response(reader))
            except asyncio.IncompleteReadError as end:
                assert end.partial == b"", end.partial  # ended between answers, not in one
    return answers


async def test_shutdown_answers_pipelined_requests_still_unread_in_the_socket():
    """Requests the server had not read yet when shutdown began (reading paused behind a full
    queue) are answered too, the last one with Connection: close; the stream then ends, no reset."""
    gate = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/0":
            await gate.wait()
        return Response(200, request.path.encode())

    server = HttpServer(handler, max_body=100)
    _host, port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/0", b""))
    await until(lambda: any(c.current for c in server.connections), "a request under way")
    (protocol,) = server.connections
    writer.write(b"".join(post(f"/{i}", b"") for i in range(1, 21)))  # fills the queue: reading pauses
    await writer.drain()
    await until(lambda: protocol.reading_paused, "reading to pause")
    writer.write(b"".join(post(f"/{i}", b"") for i in range(21, 41)))  # stays in the socket, unread
    await writer.drain()
    shutdown = asyncio.create_task(server.shutdown(timeout=5))
    await asyncio.sleep(0)
    gate.set()
    answers = await read_until_closed(reader)
    assert [body for _s, _h, body in answers] == [f"/{i}".encode() for i in range(41)]
    assert [h.get("connection") for _s, h, _b in answers] == [None] * 40 + ["close"]
    writer.close()
    await asyncio.wait_for(shutdown, 5)


async def test_shutdown_answers_a_request_that_arrives_on_an_idle_connection_and_then_closes():
    """A keep-alive connection idle when shutdown begins: the request already on its way is
    answered (Connection: close), not reset. After the grace, an idle one is closed."""
    server = HttpServer(echo, max_body=100, shutdown_grace=30)
    _host, port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/first", b""))
    assert (await read_response(reader))[0] == 200
    shutdown = asyncio.create_task(server.shutdown(timeout=60))
    async with asyncio.timeout(5):
        while not server.closing:
            await asyncio.sleep(0)
    writer.write(post("/on-its-way", b"x"))
    answers = await read_until_closed(reader)
    assert [(s, h.get("connection"), orjson.loads(b)["path"]) for s, h, b in answers] == \
        [(200, "close", "/on-its-way")]
    writer.close()
    await asyncio.wait_for(shutdown, 5)  # long before the grace: the only connection has closed


async def test_a_client_trickling_its_head_gets_408_and_is_disconnected():
    """One header byte every 50 ms keeps the connection from ever being idle for the keep-alive
    timeout (200 ms); only the head deadline (500 ms) ends it."""
    async with served(echo, keepalive_timeout=0.2, head_timeout=0.5) as (server, port), \
            connection(port) as (reader, writer):
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Test: ")
        answer = asyncio.ensure_future(read_response(reader))
        try:
            while not answer.done():
                assert loop.time() - started < 5, "the trickling connection is still open after 5 s"
                writer.write(b"a")
                await asyncio.wait({answer}, timeout=0.05)  # paces the trickle, ends with the answer
        finally:
            answer.cancel()
        status, headers, body = answer.result()
        assert loop.time() - started >= 0.5
        assert status == 408 and headers["connection"] == "close"
        assert orjson.loads(body) == {"error": "request_timeout", "status": 408,
                                      "message": "the request line and headers did not arrive within 0.5 s"}
        assert await closed(reader)
        async with asyncio.timeout(5):  # after the lingering close, however the client carries on
            while server.connections:
                with contextlib.suppress(ConnectionError):
                    writer.write(b"a")
                await asyncio.sleep(0.05)


async def test_a_pipelined_heads_deadline_runs_from_its_turn_not_while_the_request_before_is_answered():
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return Response(200, b"slow")

    async with served(slow, head_timeout=30) as (server, port), connection(port) as (reader, writer):
        loop = asyncio.get_running_loop()
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHo")
        await until(lambda: server.connections and next(iter(server.connections)).head_started is not None,
                    "the second head to begin")
        server.sweep(loop.time() + 100)  # long past the deadline, but the first request is in progress
        release.set()
        status, _headers, body = await read_response(reader)
        assert (status, body) == (200, b"slow")
        server.sweep(loop.time() + 29)  # within the deadline from the answer
        writer.write(b"st: t\r\n")
        server.sweep(loop.time() + 31)
        status, _headers, _body = await read_response(reader)
        assert status == 408
        assert await closed(reader)


def test_the_head_deadline_is_a_runtime_flag_of_positive_seconds(capsys):
    base = ["--application", "a", "--store-url", "redis://x", "--config-redis-url", "redis://x"]
    assert settings_from_args(build_parser().parse_args([*base, "--head-timeout", "2.5"])).head_timeout == 2.5
    assert settings_from_args(build_parser().parse_args(base)).head_timeout == 10
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, "--head-timeout", bad])
        assert "--head-timeout" in capsys.readouterr().err
