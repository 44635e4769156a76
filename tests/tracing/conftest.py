from __future__ import annotations

import pytest

from tests.portal_support import prometheus as prometheus_support
from tests.portal_support.live_portal import shared_database  # noqa: F401 - a fixture
from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Debian's prometheus, installed when missing and we may; CI must have it (make test installs it)."""
    found = prometheus_support.binary()
    if found is None:
        reason = ("Debian's prometheus is not installed and could not be (not root, no sudo): "
                  "run ./scripts/system-deps as root")
        if prometheus_support.ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _starter(binary: str, folder):
    servers = []

    def start(config: str | None, name: str = "prometheus") -> prometheus_support.PrometheusServer:
        """Started with ``config``; None: not yet (call ``.start(config)``)."""
        server = prometheus_support.PrometheusServer(folder / name, binary)
        servers.append(server)
        return server if config is None else server.start(config)

    return start, servers


@pytest.fixture
def start_prometheus(prometheus_binary, tmp_path):
    """``start_prometheus(config_text)``: a running Prometheus on a free port, stopped after the test."""
    start, servers = _starter(prometheus_binary, tmp_path)
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def start_module_prometheus(prometheus_binary, tmp_path_factory):
    """The same, for a Prometheus that the tests of one module share."""
    start, servers = _starter(prometheus_binary, tmp_path_factory.mktemp("prometheus"))
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mesh_prefix(settings, key_prefix, redis_client) -> str:
    """This test's own key prefix on the shared Redis (the runtimes' keys, the charts' leases)."""
    settings.MESH_KEY_PREFIX = key_prefix
    return key_prefix
