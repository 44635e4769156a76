"""What the runtime benchmarks share: a key, a configuration, a Redis, a runtime process, its CPU time.

A module, not a benchmark: ``make benchmarks`` runs the scripts beside it, not files starting
with ``_``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

from meshruntime.config import seal

ROOT = Path(__file__).resolve().parent.parent


def make_key() -> tuple[str, dict]:
    """A plain application key and its MeshConfig entry (prefix and SHA-256 only)."""
    alphabet = string.ascii_letters + string.digits
    prefix = "".join(secrets.choice(alphabet) for _ in range(8))
    key = f"mk_{prefix}_{secrets.token_urlsafe(30)[:40]}"
    return key, {"prefix": prefix, "sha256": hashlib.sha256(key.encode()).hexdigest(), "expires_at": None}


def publish_config(key_entry: dict, topic: str, max_length: int) -> dict:
    """A sealed MeshConfig (version 1): one Redis topic, ``topic``, keeping up to ``max_length``
    events, that the application ``bench`` (``key_entry``) may publish to."""
    doc = {
        "format": 1,
        "stores": [{"name": "default", "kind": "redis"}],
        "topics": [{"name": topic, "store": "default", "lifecycle": "active", "sunset": None, "schema": None,
                    "retention": {"max_age_seconds": None, "max_length": max_length}}],
        "applications": [{"name": "bench", "team": "perf", "keys": [key_entry]}],
        "access_rules": [{"id": "rule-1", "principals": ["bench"], "topic": "bench.*", "actions": ["publish"],
                          "effect": "allow", "description": ""}],
        "subscriptions": [],
        "routing_rules": [],
    }
    return seal(doc, 1)


def default_redis_url() -> str:
    """REDIS_URL, or a private Redis under data/bench-redis (left running for the next run).

    The private one persists as the demo's does (append-only file, fsync every second) but does
    not rewrite that file by itself: a rewrite forks and keeps a CPU busy for a second or more,
    and on two CPUs one landing inside a measured phase (a run writes some 60 MB, about what
    triggers one) moved a ratio more than the code did. Each run starts from a freshly rewritten
    file instead. A Redis named by REDIS_URL is used as it is.
    """
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    import contextlib
    import time

    import redis

    from meshadmin.embedded import default_data_dir, ensure_redis

    url = ensure_redis(default_data_dir() / "bench-redis")
    client = redis.Redis.from_url(url)
    try:
        client.config_set("auto-aof-rewrite-percentage", 0)
        with contextlib.suppress(redis.ResponseError):  # one is already under way
            client.bgrewriteaof()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            persistence = client.info("persistence")
            if not persistence["aof_rewrite_in_progress"] and not persistence["aof_rewrite_scheduled"]:
                break
            time.sleep(0.05)
    finally:
        client.close()
    return url


def start_runtime(redis_url: str, prefix: str, config_path: Path, *extra: str) -> tuple[subprocess.Popen, str, int]:
    """A gateway runtime on a free port, configured from ``config_path``; returns it, host and port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "meshruntime", "--gateway", "--listen", "127.0.0.1:0", "--store-url", redis_url,
         "--config-file", str(config_path), "--prefix", prefix, "--log-level", "WARNING", *extra],
        stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True,
    )
    line = process.stdout.readline()
    if "listening on http://" not in line:
        process.kill()
        raise SystemExit(f"the runtime did not start: {line!r}")
    host, port = line.rsplit("http://", 1)[1].strip().rsplit(":", 1)
    return process, host, int(port)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (Linux): the runtime delivers from
    a child process of its own by default. Tells cost from waiting on a busy machine."""
    try:
        return sum(_own_cpu_seconds(p) for p in (pid, *_children(pid)))
    except OSError:
        return float("nan")


def _own_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(path.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(path.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def private_data_dir() -> str | None:
    """Point MESHADMIN_DATA_DIR at a new temporary folder, unless it is set; return the folder
    made (for :func:`remove_data_dir`), or None."""
    if os.environ.get("MESHADMIN_DATA_DIR"):
        return None
    import tempfile

    path = os.environ["MESHADMIN_DATA_DIR"] = tempfile.mkdtemp(prefix="meshadmin-bench-")
    return path


def remove_data_dir(path: str | None) -> None:
    """Stop the private Redis the settings may have started in ``path``, then remove it."""
    if path is None:
        return
    import shutil

    from meshadmin.embedded import stop_redis

    for redis_dir in Path(path).glob("*redis*"):
        stop_redis(redis_dir)
    shutil.rmtree(path, ignore_errors=True)

