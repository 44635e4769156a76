"""The webhook HTTP/1.1 client against raw servers that answer exactly what each test needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from meshruntime.delivery.http1 import MAX_BODY_BYTES, MAX_HEAD_BYTES, Http1Client, HttpError, InvalidUrl

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


class RawServer:
    def __init__(self, answer: bytes | Callable[[int], bytes], *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    request = await read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                self.requests.append(request)
                answer = self.answer(len(self.requests)) if callable(self.answer) else self.answer
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    return
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook?x=1"


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def client():
    client = Http1Client(user_agent="test-agent")
    yield client
    await client.close()


async def test_it_posts_and_reuses_the_connection(client):
    async with RawServer(OK) as server:
        for i in range(3):
            response = await client.post(server.url, {"Content-Type": "application/json"}, b'{"i":%d}' % i, 2)
            assert (response.status, response.body) == (200, b"ok")
        assert server.connections == 1
        head, body = server.requests[2]
        assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and body == b'{"i":2}'
        assert b"User-Agent: test-agent" in head and b"Content-Type: application/json" in head
        assert f"Host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}".encode() in head


async def test_it_reads_chunked_bodies_and_keeps_the_connection(client):
    chunked = (b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n"
               b"4\r\nbusy\r\n5\r\n now!\r\n0\r\n\r\n")
    async with RawServer(chunked) as server:
        response = await client.post(server.url, {}, b"x", 2)
        assert (response.status, response.body, response.headers["retry-after"]) == (503, b"busy now!", "3")
        await client.post(server.url, {}, b"x", 2)
        assert server.connections == 1


async def test_a_204_has_no_body_even_without_a_length(client):
    async with RawServer(b"HTTP/1.1 204 No Content\r\n\r\n") as server:
        assert (await client.post(server.url, {}, b"x", 1)).status == 204
        assert (await client.post(server.url, {}, b"x", 1)).status == 204
        assert server.connections == 1


async def test_a_body_without_length_runs_until_close(client):
    async with RawServer(b"HTTP/1.0 500 Oops\r\n\r\nsomething broke", close_after=True) as server:
        response = await client.post(server.url, {}, b"x", 2)
        assert (response.status, response.body) == (500, b"something broke")
        await client.post(server.url, {}, b"x", 2)
        assert server.connections == 2  # not kept: HTTP/1.0 and close-delimited


async def test_informational_answers_are_skipped(client):
    async with RawServer(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK) as server:
        assert (await client.post(server.url, {}, b"x", 2)).status == 200


async def test_connection_close_is_honoured(client):
    async with RawServer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                         close_after=True) as server:
        await client.post(server.url, {}, b"x", 2)
        await client.post(server.url, {}, b"x", 2)
        assert server.connections == 2


async def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_new_one(client):
    async with RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close_after=True) as server:
        await client.post(server.url, {}, b"x", 2)  # kept by the client, closed by the server
        await asyncio.sleep(0.05)
        assert (await client.post(server.url, {}, b"x", 2)).status == 200
        assert len(server.requests) == 2


async def test_failures_are_http_errors(client):
    with pytest.raises(HttpError, match="cannot connect"):
        await client.post("http://127.0.0.1:9/hook", {}, b"x", 2)
    async with RawServer(b"garbage\r\n\r\n") as server:
        with pytest.raises(HttpError, match="not an HTTP/1.x response"):
            await client.post(server.url, {}, b"x", 2)
    async with RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close_after=True) as server:
        with pytest.raises(HttpError, match="cut off"):
            await client.post(server.url, {}, b"x", 2)
    async with RawServer(b"", close_after=True) as server:
        with pytest.raises(HttpError, match="without answering"):
            await client.post(server.url, {}, b"x", 2)
    with pytest.raises(HttpError, match="line break"):
        await client.post("http://127.0.0.1:9/", {"X-Bad": "a\r\nInjected: 1"}, b"x", 2)


async def test_a_silent_server_times_out(client):
    async def never(reader, writer):
        await asyncio.sleep(10)

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    try:
        with pytest.raises(TimeoutError):
            await client.post(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", {}, b"x", 0.2)
    finally:
        server.close()


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "not a url", "http://h:99999/"])
async def test_it_refuses_what_is_not_an_http_url(client, url):
    with pytest.raises(InvalidUrl):
        await client.post(url, {}, b"x", 1)


async def sent(client: Http1Client, url: str, body: bytes = b"x", timeout: float = 2) -> tuple:
    """Http1Client.send, awaited: (response, error), and whether done came before send returned."""
    answer = asyncio.get_running_loop().create_future()
    returned = False

    def done(response, error):
        answer.set_result((response, error, returned))

    client.send(url, {}, body, timeout, done)
    returned = True
    return await answer


async def test_send_calls_back_once_with_the_answer_and_reuses_the_connection(client):
    async with RawServer(OK) as server:
        for _ in range(3):
            response, error, after_return = await sent(client, server.url)
            assert (response.status, response.body, error, after_return) == (200, b"ok", None, True)
        assert server.connections == 1


async def test_send_retries_the_keep_alive_race_on_a_new_connection(client):
    connections = []

    async def one_answer_per_connection(reader, writer):  # then closes on the next request, unanswered
        connections.append(writer)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await read_request(reader)
        writer.close()

    server = await asyncio.start_server(one_answer_per_connection, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        assert (await sent(client, url))[0].status == 200
        response, error, _ = await sent(client, url)  # the kept connection is closed: a new one answers
        assert (response.status, error) == (200, None)
        assert len(connections) == 2
    finally:
        server.close()


async def test_send_reports_failures_and_timeouts_never_before_it_returns(client):
    response, error, after_return = await sent(client, "ftp://example.com/x")
    assert response is None and isinstance(error, InvalidUrl) and after_return
    response, error, after_return = await sent(client, "http://127.0.0.1:9/hook")
    assert isinstance(error, HttpError) and after_return

    async def never(reader, writer):
        await asyncio.sleep(10)

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        response, error, _ = await sent(client, url, timeout=0.2)
        assert response is None and isinstance(error, TimeoutError)
    finally:
        server.close()


async def test_requests_under_way_time_out_each_at_its_own_deadline(client):
    async def never(reader, writer):
        await asyncio.sleep(10)

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def timed_out_after(timeout: float) -> float:
            with pytest.raises(TimeoutError):
                await client.post(url, {}, b"x", timeout)
            return loop.time() - started

        slow = asyncio.create_task(timed_out_after(0.8))
        await asyncio.sleep(0.05)
        fast, short = await asyncio.gather(timed_out_after(0.2), timed_out_after(0.4))
        assert 0.2 <= fast < 0.4 and 0.4 <= short < 0.6  # not held back by the later deadline set first
        assert 0.8 <= await slow < 1.1
    finally:
        server.close()


async def test_it_gets(client):
    async with RawServer(OK) as server:
        response = await client.get(server.url, 2, {"Accept": "text/plain"})
        assert (response.status, response.body) == (200, b"ok")
        await client.get(server.url, 2)
        assert server.connections == 1
        head, body = server.requests[0]
        assert head.startswith(b"GET /hook?x=1 HTTP/1.1\r\n") and b"Accept: text/plain\r\n" in head and body == b""
        assert b"Content-Length" not in head


async def test_an_answer_arriving_byte_by_byte_is_read_whole(client):
    answer = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Slow Down\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n"
              b"\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")

    async def trickle(reader, writer):
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            for i in range(len(answer)):
                writer.write(answer[i:i + 1])
                await writer.drain()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        for _ in range(2):  # and the connection is kept for the next
            response = await client.post(url, {}, b"x", 5)
            assert (response.status, response.body, response.headers["retry-after"]) == (429, b"abcde", "7")
        assert len(client._idle[("http", "127.0.0.1", server.sockets[0].getsockname()[1])]) == 1
    finally:
        server.close()


async def test_a_body_over_the_limit_is_cut_and_its_connection_closed(client):
    long = b"y" * (MAX_BODY_BYTES + 10)
    for answer in (b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(long), long),
                   b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(long), long)):
        async with RawServer(answer) as server:
            response = await client.post(server.url, {}, b"x", 5)
            assert response.status == 500 and 0 < len(response.body) <= MAX_BODY_BYTES
            assert set(response.body) == {ord("y")}
            await client.post(server.url, {}, b"x", 5)
            assert server.connections == 2


async def test_a_head_over_the_limit_is_an_error(client):
    many = b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEAD_BYTES // 1000 + 1))
    endless = b"X-Endless: " + b"v" * (2 * MAX_HEAD_BYTES)
    for answer in (b"HTTP/1.1 200 OK\r\n" + many + b"Content-Length: 0\r\n\r\n", b"HTTP/1.1 200 OK\r\n" + endless):
        async with RawServer(answer) as server:
            with pytest.raises(HttpError, match="head is longer than"):
                await client.post(server.url, {}, b"x", 5)


async def test_a_connection_that_answered_more_than_asked_is_not_reused(client):
    async with RawServer(OK + b"HTTP/1.1 200 OK\r\n") as server:
        assert (await client.post(server.url, {}, b"x", 2)).body == b"ok"
        await client.post(server.url, {}, b"x", 2)
        assert server.connections == 2


async def test_only_http_1_1_connections_are_kept(client):
    async with RawServer(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok") as server:
        assert (await client.post(server.url, {}, b"x", 2)).body == b"ok"
        await client.post(server.url, {}, b"x", 2)
        assert server.connections == 2


async def test_a_malformed_answer_is_an_http_error(client):
    async with RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n") as server:
        with pytest.raises(HttpError, match="malformed"):
            await client.post(server.url, {}, b"x", 2)
