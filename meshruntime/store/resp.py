"""A minimal pipelined Redis connection for the store's hot paths (append, delivery read, ack).

redis-py reads each reply of a pipeline with its own await and timeout scope; for an append of
a hundred events with their journeys that is three hundred of them, most of the CPU an append
costs. Here a write is one ``writer.write`` of pre-packed RESP and the replies are parsed by
hiredis straight from the socket buffer. Everything else in the store still uses redis-py.

Connections come from the same URL as the store's redis-py client (``redis://``, ``rediss://``,
``unix://``, with user, password and db), via redis-py's own URL parser; a ``rediss://`` URL's
TLS options (``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_check_hostname``, …)
make the same TLS context redis-py makes of them.

Every request has a deadline: Redis that stops answering (paused, frozen, or a network that
drops packets without a reset) fails the request with :class:`redis.exceptions.TimeoutError`
within it, and the connection is closed, since a late reply would answer the next request on it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from meshruntime.deadlines import Deadlines

__all__ = ["REPLY_TIMEOUT_SECONDS", "RespPool", "bulk", "command"]

_READ_SIZE = 1 << 16
# Redis answers a command at once (a blocked read: at the end of its block time); a reply this
# much later means the server or the way to it is gone, which without a reset looks like silence.
REPLY_TIMEOUT_SECONDS = 10.0


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def ssl_context(url: str, options: dict[str, Any] | None = None) -> ssl.SSLContext | None:
    """The TLS context redis-py would use for ``url`` (None unless it is ``rediss://``).

    The ``ssl_*`` options of the URL's query go to redis-py's own TLS connection class, so that
    they mean here exactly what they mean to the store's redis-py client; an option it does not
    know, or a value it refuses, is a :class:`ValueError` naming it."""
    options = parse_url(url) if options is None else options
    if options.get("connection_class") is not SSLConnection:
        return None
    tls = {name: value for name, value in options.items() if name.startswith("ssl_")}
    try:
        return SSLConnection(**tls).ssl_context.get()
    except TypeError as error:
        raise ValueError(f"{_redacted(url)}: a TLS option redis-py does not know ({error})") from None
    except (RedisError, ssl.SSLError, OSError, ValueError) as error:
        raise ValueError(f"{_redacted(url)}: its TLS options are not usable: {error}") from None


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2].partition('?')[0]}"


class _Connection:
    __slots__ = ("reader", "writer", "parser", "used", "received", "deadline", "timeout", "timed_out")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader(replyError=ResponseError)
        self.used = False
        self.received = 0
        self.deadline = 0.0  # of the request under way (see Deadlines)
        self.timeout = 0.0
        self.timed_out = False

    async def request(self, payload: bytes, replies: int) -> list[Any]:
        """Write ``payload`` (``replies`` commands) and return every reply, errors as values."""
        self.writer.write(payload)
        self.received = 0
        out: list[Any] = []
        parser = self.parser
        while len(out) < replies:
            data = await self.reader.read(_READ_SIZE)
            if not data:
                if self.timed_out:
                    raise RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s")
                raise RedisConnectionError("Redis closed the connection")
            parser.feed(data)
            reply = parser.gets()
            while reply is not False:
                out.append(reply)
                reply = parser.gets()
            self.received = len(out)
        return out

    def expire(self) -> None:
        """The deadline came first: cut the connection, which ends the read under way."""
        self.timed_out = True
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


class RespPool:
    """A few raw connections, reused LIFO; a connection that fails is closed, never reused."""

    def __init__(self, url: str, *, max_idle: int = 8, connect_timeout: float = 2.0,
                 reply_timeout: float = REPLY_TIMEOUT_SECONDS) -> None:
        self.options = parse_url(url)
        self.ssl_context = ssl_context(url, self.options)
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self._idle: list[_Connection] = []
        self._deadlines = Deadlines()

    async def _connect(self) -> _Connection:
        o = self.options
        async with asyncio.timeout(self.connect_timeout):
            if "path" in o:
                reader, writer = await asyncio.open_unix_connection(o["path"])
            else:
                reader, writer = await asyncio.open_connection(o["host"], o.get("port", 6379), ssl=self.ssl_context)
            connection = _Connection(reader, writer)
            setup = []
            if o.get("password"):
                user = [o["username"].encode()] if o.get("username") else []
                auth = [b"AUTH", *user, o["password"].encode()]
                setup.append(command(*auth))
            if o.get("db"):
                setup.append(command(b"SELECT", str(o["db"]).encode()))
            if setup:
                for reply in await connection.request(b"".join(setup), len(setup)):
                    if isinstance(reply, ResponseError):
                        connection.close()
                        raise reply
        return connection

    async def request(self, payload: bytes, replies: int, timeout: float | None = None) -> list[Any]:
        """Run pre-packed commands on one connection; retry once if a reused one was dead.

        A reused connection that yields no reply at all was most likely closed while idle
        (a Redis restart); the commands are sent again on a new connection. That can duplicate
        them if Redis ran them and died before answering, which at-least-once allows.

        Every reply must have come within ``timeout`` seconds (the pool's ``reply_timeout`` by
        default; a blocked read adds its block time), or :class:`redis.exceptions.TimeoutError`
        is raised: whether Redis ran the commands is then unknown, and they are not sent again.
        """
        loop = asyncio.get_running_loop()
        timeout = self.reply_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        for attempt in (1, 2):
            connection = self._idle.pop() if self._idle else await self._connect()
            reused = connection.used
            connection.timeout = timeout
            self._deadlines.watch(connection, loop, deadline)
            try:
                out = await connection.request(payload, replies)
            except BaseException as error:
                connection.close()
                retry = (attempt == 1 and reused and connection.received == 0 and not connection.timed_out
                         and isinstance(error, OSError | RedisConnectionError))
                if not retry:
                    if isinstance(error, OSError):
                        raise RedisConnectionError(str(error) or type(error).__name__) from error
                    raise
                continue
            finally:
                self._deadlines.discard(connection)
            connection.used = True
            if len(self._idle) < self.max_idle:
                self._idle.append(connection)
            else:
                connection.close()
            return out
        raise AssertionError("unreachable")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
