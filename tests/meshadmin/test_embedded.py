"""The embedded mode's processes: nothing starts the private Redis but the commands that use it,
each of them stops it when it ends (the last one out), and so does the test suite.

Servers are found by their working folder, a data folder of the test's own
(``MESHADMIN_DATA_DIR``), so the suite's and other worktrees' servers do not count.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from meshadmin.asgi import lifespan
from meshadmin.demo import supervise
from meshadmin.embedded import private_redis, redis_url
from tests.meshruntime.private_redis import free_port
from tests.portal_support.waiting import until

ROOT = Path(__file__).resolve().parent.parent.parent
TIMEOUT = 60


def processes_using(path: Path) -> list[str]:
    """The Redis servers running in ``path`` (a daemonised Redis rewrites its command line, but
    works in its ``--dir``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # ended meanwhile, or not ours to look at
        if name == "redis-server" and cwd.startswith(str(path.resolve())):
            found.append(f"{entry.name} in {cwd}")
    return found


def embedded_env(data_dir: Path) -> dict[str, str]:
    """The environment of a process on the embedded defaults, in a data folder of the test's own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE") and not k.startswith("PYTEST_XDIST_")}
    return {**env, "MESHADMIN_DATA_DIR": str(data_dir), "MESHADMIN_EMBEDDED_REDIS": "redis", "PYTHONUNBUFFERED": "1"}


def holding_private_redis(folder: Path) -> subprocess.Popen:
    """Another process that uses the private Redis in ``folder`` until its stdin closes; returned
    once it runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from meshadmin.embedded import private_redis\n"
                               f"with private_redis(Path({str(folder)!r})):\n"
                               "    print('ready', flush=True); sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if holder.stdout.readline().strip() != "ready":
        holder.kill()
        holder.wait(timeout=TIMEOUT)
        pytest.fail("the process that was to hold the private Redis did not start")
    return holder


def test_importing_the_settings_and_running_a_command_start_no_process(tmp_path):
    script = "import meshadmin, django; django.setup(); from django.conf import settings; print(settings.REDIS_URL)"
    result = subprocess.run([sys.executable, "-c", script], env=embedded_env(tmp_path), cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"unix://{tmp_path.resolve()}/redis/redis.sock"
    result = subprocess.run([sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
                            env=embedded_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert processes_using(tmp_path) == []


def test_the_private_redis_is_stopped_by_the_last_process_that_uses_it(tmp_path):
    """Another process uses it first; this one comes and goes; the other one's leaving stops it."""
    folder = tmp_path / "redis"
    holder = holding_private_redis(folder)
    try:
        with private_redis(folder) as url:
            assert url == redis_url(folder)
            assert len(processes_using(tmp_path)) == 1
        assert len(processes_using(tmp_path)) == 1, "stopped while another process used it"
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=TIMEOUT) == 0
    assert processes_using(tmp_path) == []


def test_a_user_killed_outright_does_not_keep_the_private_redis_running(tmp_path):
    folder = tmp_path / "redis"
    holder = holding_private_redis(folder)
    holder.kill()
    holder.wait(timeout=TIMEOUT)
    with private_redis(folder):
        pass
    assert processes_using(tmp_path) == []


async def test_the_portals_lifespan_runs_the_private_redis_from_start_up_to_shutdown(tmp_path, settings):
    settings.EMBEDDED_REDIS_DIR = tmp_path / "redis"
    messages: asyncio.Queue[dict] = asyncio.Queue()
    sent: list[str] = []

    async def send(message):
        sent.append(message["type"])

    task = asyncio.create_task(lifespan({"type": "lifespan"}, messages.get, send))
    await messages.put({"type": "lifespan.startup"})
    await until(lambda: sent, "the lifespan to answer its startup", TIMEOUT)
    assert sent == ["lifespan.startup.complete"]
    assert len(processes_using(tmp_path)) == 1
    await messages.put({"type": "lifespan.shutdown"})
    await task
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert processes_using(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    pytest.param(["-m", "celery", "-A", "meshadmin", "worker", "--concurrency", "1", "-l", "INFO"], id="worker"),
    pytest.param(["-m", "uvicorn", "meshadmin.asgi:application", "--host", "127.0.0.1", "--port", "{port}"],
                 id="portal"),
])
def test_the_worker_and_the_portal_run_the_private_redis_while_they_run(tmp_path, command):
    port = free_port()
    process = subprocess.Popen([sys.executable, *(part.format(port=port) for part in command)],
                               env=embedded_env(tmp_path), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in process.stdout:  # until it serves: the Redis is up by then
            output.append(line)
            if re.search(r"ready\.|Application startup complete", line):
                break
        assert len(processes_using(tmp_path)) == 1, "".join(output)
        process.send_signal(signal.SIGTERM)
        # uvicorn ends by raising the signal again once it has shut down
        assert process.wait(timeout=TIMEOUT) in (0, -signal.SIGTERM), "".join(output) + process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert processes_using(tmp_path) == []


def test_the_test_suite_stops_the_redis_it_started(tmp_path):
    """A run of the suite (one test that uses Redis) in a data folder of its own leaves nothing."""
    env = embedded_env(tmp_path)
    del env["MESHADMIN_EMBEDDED_REDIS"]  # the suite's settings name their own folder
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/meshruntime/test_store.py::test_it_appends_in_order_and_returns_ids"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "test-redis" / "appendonly.aof").exists() or (tmp_path / "test-redis" / "appendonlydir").exists()
    assert processes_using(tmp_path) == []


def test_make_demo_stopped_with_ctrl_c_ends_quietly(tmp_path):
    """Ctrl-C reaches the whole foreground process group; the supervisor stops its processes and
    ends with status 0, so that ``make`` prints no ``Error 130``."""
    child = f"{sys.executable} -c \"import time; print('ready', flush=True); time.sleep(600)\""
    script = ("import os, sys; from pathlib import Path; from meshadmin.demo import supervise\n"
              f"sys.exit(supervise({{'child': {child!r}}}, dict(os.environ), Path('.')))")
    demo = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in demo.stdout:
            if "ready" in line:
                break
        os.killpg(demo.pid, signal.SIGINT)
        out, err = demo.communicate(timeout=TIMEOUT)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, out + err
    assert "Traceback" not in out + err


def test_the_supervisor_reports_a_process_that_fails_on_its_own():
    assert supervise({"failing": f"{sys.executable} -c 'raise SystemExit(3)'"}, dict(os.environ), ROOT) == 3


def test_the_package_licence_is_an_spdx_expression():
    """The table form (``license = {text = ...}``) is deprecated: setuptools warns on every install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    requirement = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=(\d+)", requirement).group(1)) >= 77  # the first to read the string form
