"""Fixtures of the rollout's tests: the personas, and a Redis key space and task queue per test."""

from __future__ import annotations

from tests.portal_support.live_portal import shared_database  # noqa: F401 - a fixture
from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture: this test's key prefix and queue
from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams
