"""The channel layer as the settings configure it, on the suite's real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis
from channels.layers import get_channel_layer


async def test_a_consumer_may_wait_quietly_longer_than_one_blocking_read():
    """A consumer waits for its next message with 5 s BZPOPMINs; with redis-py's default 5 s read
    timeout the read gave up first and the wait ended in a TimeoutError, closing every websocket
    (chart pages, the runtimes page) after each quiet spell of five seconds."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    with pytest.raises(TimeoutError) as waited:
        await asyncio.wait_for(layer.receive(channel), 11)
    assert not isinstance(waited.value, redis.RedisError), waited.value
