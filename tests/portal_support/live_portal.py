"""The portal as other processes see it: a database they can open, the portal under uvicorn.

Shared by the tests that run the real thing in other processes (a Celery worker, uvicorn for a
browser, Prometheus scraping the portal). ``shared_database`` moves a test on in-memory SQLite
onto a file copy for its duration; on PostgreSQL it is the test database itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.portal_support.waiting import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_database(tmp_path) -> Iterator[str]:
    """A database URL that another process can open, holding what this test writes."""
    connection.ensure_connection()
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        s = connection.settings_dict
        if connection.vendor == "sqlite":
            yield f"sqlite:///{s['NAME']}"
        else:
            yield f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"
        return
    path = tmp_path / "e2e.sqlite3"
    memory, name = connection.connection, connection.settings_dict["NAME"]
    copy = sqlite3.connect(path)
    memory.backup(copy)  # the migrated schema, and whatever fixtures wrote so far
    copy.close()
    connection.connection = None  # keep the in-memory database open (it vanishes when closed)
    connection.settings_dict["NAME"] = str(path)
    try:
        yield f"sqlite:///{path}"
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
        connection.connection = memory  # the in-memory database, for the rest of the session


@contextlib.contextmanager
def uvicorn_portal(database_url: str, redis_url: str, prefix: str, **env: str) -> Iterator[str]:
    """The portal under uvicorn (ASGI: pages and websockets) on this database and key prefix;
    yields its URL once it serves, stops it after."""
    port = free_port()
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshadmin.settings.test",
                   "DATABASE_URL": database_url, "REDIS_URL": redis_url, "MESH_KEY_PREFIX": prefix, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "meshadmin.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning",
         # a test's end need not wait for a closing consumer longer than this
         "--timeout-graceful-shutdown", "5"],
        cwd=ROOT, env=environment,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy():
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited with {process.returncode}")
        try:
            return urllib.request.urlopen(f"{url}/healthz", timeout=1).status == 200  # noqa: S310
        except OSError:
            return False

    try:
        wait_for(healthy, 30, "uvicorn to serve", interval=0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)
