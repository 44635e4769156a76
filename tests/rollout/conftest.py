"""Fixtures of the rollout's tests: the personas, and a Redis key space and task queue per test."""

from __future__ import annotations

import pytest

from tests.portal_support.live_portal import shared_database  # noqa: F401 - a fixture
from tests.portal_support.mesh import BROKER_PREFIX
from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams


@pytest.fixture
def mesh_redis(settings, key_prefix, redis_client):
    """This test's own key prefix and task queue on the shared Redis."""
    settings.MESH_KEY_PREFIX = key_prefix
    settings.MESH_PUSH_QUEUE = f"{key_prefix}push"
    yield redis_client
    for key in redis_client.scan_iter(match=f"{BROKER_PREFIX}*{key_prefix}*"):
        redis_client.delete(key)
