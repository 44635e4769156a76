"""A minimal pipelined Redis connection for the append hot path.

redis-py reads each reply of a pipeline with its own await and timeout scope; for an append of
a hundred events with their journeys that is three hundred of them, most of the CPU an append
costs. Here a write is one ``writer.write`` of pre-packed RESP and the replies are parsed by
hiredis straight from the socket buffer. Everything else in the store still uses redis-py.

Connections come from the same URL as the store's redis-py client (``redis://``, ``rediss://``,
``unix://``, with user, password and db), via redis-py's own URL parser.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

__all__ = ["RespPool", "bulk", "command"]

_READ_SIZE = 1 << 16


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


class _Connection:
    __slots__ = ("reader", "writer", "parser", "used", "received")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader(replyError=ResponseError)
        self.used = False
        self.received = 0

    async def request(self, payload: bytes, replies: int) -> list[Any]:
        """Write ``payload`` (``replies`` commands) and return every reply, errors as values."""
        self.writer.write(payload)
        self.received = 0
        out: list[Any] = []
        parser = self.parser
        while len(out) < replies:
            data = await self.reader.read(_READ_SIZE)
            if not data:
                raise RedisConnectionError("Redis closed the connection")
            parser.feed(data)
            reply = parser.gets()
            while reply is not False:
                out.append(reply)
                reply = parser.gets()
            self.received = len(out)
        return out

    def close(self) -> None:
        self.writer.close()


class RespPool:
    """A few raw connections, reused LIFO; a connection that fails is closed, never reused."""

    def __init__(self, url: str, *, max_idle: int = 8, connect_timeout: float = 2.0) -> None:
        self.options = parse_url(url)
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        o = self.options
        async with asyncio.timeout(self.connect_timeout):
            if "path" in o:
                reader, writer = await asyncio.open_unix_connection(o["path"])
            else:
                context = None
                if o.get("connection_class") is SSLConnection:
                    context = ssl.create_default_context()
                reader, writer = await asyncio.open_connection(o["host"], o.get("port", 6379), ssl=context)
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

    async def request(self, payload: bytes, replies: int) -> list[Any]:
        """Run pre-packed commands on one connection; retry once if a reused one was dead.

        A reused connection that yields no reply at all was most likely closed while idle
        (a Redis restart); the commands are sent again on a new connection. That can duplicate
        them if Redis ran them and died before answering, which at-least-once allows.
        """
        for attempt in (1, 2):
            connection = self._idle.pop() if self._idle else await self._connect()
            reused = connection.used
            try:
                out = await connection.request(payload, replies)
            except BaseException as error:
                connection.close()
                retry = (attempt == 1 and reused and connection.received == 0
                         and isinstance(error, OSError | RedisConnectionError))
                if not retry:
                    if isinstance(error, OSError):
                        raise RedisConnectionError(str(error) or type(error).__name__) from error
                    raise
                continue
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
