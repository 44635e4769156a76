"""The whole stack in processes, for browser tests of live pages: the portal under uvicorn (pages
and websockets, the real channel layer) on the test's database, and a runtime process configured
from the database as a push would configure it. Both use the test's Redis key prefix.

Use with ``pytest.mark.django_db(transaction=True)``: the processes see only what is committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshruntime.config import seal
from rollout.compiler import compile_mesh_config
from tests.portal_support import live_portal
from tests.portal_support.live_portal import ROOT


@pytest.fixture
def uvicorn_portal(shared_database, settings, redis_url) -> Iterator[str]:
    """The portal under uvicorn (ASGI: pages and websockets) on the test's database; its base URL.
    A test that uses it imports ``shared_database`` from ``live_portal`` too."""
    with live_portal.uvicorn_portal(shared_database, redis_url, settings.MESH_KEY_PREFIX,
                                    MESH_TAIL_RATE=str(settings.MESH_TAIL_RATE)) as url:
        yield url


def start_runtime(redis_url: str, prefix: str, config_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``python -m meshruntime`` as a gateway on a free port; the process and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "meshruntime", "--gateway", "--listen", "127.0.0.1:0", "--store-url", redis_url,
         "--config-file", str(config_path), "--prefix", prefix, "--no-delivery-process", "--log-level", "WARNING",
         *extra],
        stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    line = process.stdout.readline()
    if "listening on http://" not in line:
        process.kill()
        pytest.fail(f"the runtime did not start: {line!r}")
    return process, "http://" + line.rsplit("http://", 1)[1].strip()


@pytest.fixture
def runtime_process(redis_url, settings, tmp_path) -> Iterator[Callable[[], str]]:
    """``start()`` runs a runtime configured from the database as it is now; its base URL."""
    started: list[subprocess.Popen] = []

    def start() -> str:
        path = tmp_path / f"mesh-{len(started)}.json"
        path.write_text(json.dumps(seal(compile_mesh_config(), 1)))
        process, url = start_runtime(redis_url, settings.MESH_KEY_PREFIX, path)
        started.append(process)
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(30)


def publish(runtime_url: str, topic: str, body: object, key: str) -> int:
    """POST one structured event (or a batch, for a list; bytes: the JSON text of one, as written)
    to a runtime; the status."""
    batch = isinstance(body, list)
    request = urllib.request.Request(
        f"{runtime_url}/v1/topics/{topic}/events", method="POST",
        data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}",
                 "Content-Type": "application/cloudevents-batch+json" if batch else "application/cloudevents+json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
