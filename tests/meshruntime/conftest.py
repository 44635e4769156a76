"""Fixtures the runtime's suites share (the services themselves come from ``tests/conftest.py``)."""

from __future__ import annotations

import pytest
from delivery_harness import managers, receiver  # noqa: F401 - fixtures of the delivery tests

from meshruntime.store import open_store


@pytest.fixture
async def store(redis_url, key_prefix, redis_client):  # redis_client removes the prefix's keys after
    """The Redis Streams store under this test's own key prefix (journeys kept a minute)."""
    store = open_store(redis_url, prefix=key_prefix, journey_ttl_seconds=60)
    yield store
    await store.close()
