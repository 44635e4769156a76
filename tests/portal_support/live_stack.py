"""The whole stack in processes, for browser tests of live pages: the portal under uvicorn (pages
and websockets, the real channel layer) on the test's database, and a runtime process configured
from the database as a push would configure it. Both use the test's Redis key prefix.

Use with ``pytest.mark.django_db(transaction=True)``: the processes see only what is committed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from meshruntime.config import seal
from rollout.compiler import compile_mesh_config

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until it is truthy (and return its value) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    """A URL another process can open, holding what this test writes (a file copy for in-memory SQLite)."""
    connection.ensure_connection()
    s = connection.settings_dict
    if connection.vendor != "sqlite":
        yield f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"
        return
    if not connection.is_in_memory_db():
        yield f"sqlite:///{s['NAME']}"
        return
    path = tmp_path / "live.sqlite3"
    memory, name = connection.connection, s["NAME"]
    copy = sqlite3.connect(path)
    memory.backup(copy)
    copy.close()
    connection.connection = None  # keep the in-memory database open (it vanishes when closed)
    s["NAME"] = str(path)
    try:
        yield f"sqlite:///{path}"
    finally:
        connection.close()
        s["NAME"] = name
        connection.connection = memory


@pytest.fixture
def uvicorn_portal(database_url, settings, redis_url) -> Iterator[str]:
    """The portal under uvicorn (ASGI: pages and websockets); its base URL."""
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshadmin.settings.test", "DATABASE_URL": database_url,
           "REDIS_URL": redis_url, "MESH_KEY_PREFIX": settings.MESH_KEY_PREFIX,
           "MESH_TAIL_RATE": str(settings.MESH_TAIL_RATE)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "meshadmin.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/healthz", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 30, "uvicorn to serve")
        yield url
    finally:
        process.terminate()
        process.wait(30)


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
    """POST one structured event (or a batch, for a list) to a runtime; the status."""
    batch = isinstance(body, list)
    request = urllib.request.Request(
        f"{runtime_url}/v1/topics/{topic}/events", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}",
                 "Content-Type": "application/cloudevents-batch+json" if batch else "application/cloudevents+json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
