"""``make demo``: the whole mesh on one machine, on the embedded defaults.

Starts the private Redis, migrates SQLite, loads the demo data, then runs the portal, a Celery
worker and beat, the heartbeat ingester, one runtime per demo application, a demo subscriber (it
receives the demo subscriptions' webhooks) and a demo producer (a few events a second, some
refused on purpose) under one supervisor (honcho). Ctrl-C stops all of it, then the private Redis,
and the command ends with status 0: stopping the demo is how it is meant to end, not an error
(``make`` would print ``Error 130``).

With Debian's ``prometheus`` installed (``./scripts/system-deps`` installs it), it also runs a
Prometheus that finds every runtime through the portal's service discovery (storage in
``data/prometheus``, a scrape every 5 s) and points the portal's charts at it. Without one the
demo runs all the same, and every chart says why it is empty and how to fix that.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

from meshadmin.embedded import default_data_dir, private_redis

PORTAL_PORT = int(os.environ.get("MESHADMIN_PORT", "8000"))
SUBSCRIBER_PORT = int(os.environ.get("MESHADMIN_DEMO_SUBSCRIBER_PORT", "8100"))
RUNTIME_BASE_PORT = int(os.environ.get("MESHADMIN_DEMO_RUNTIME_PORT", "8200"))
PROMETHEUS_PORT = int(os.environ.get("MESHADMIN_DEMO_PROMETHEUS_PORT", "9090"))
SCRAPE_INTERVAL = 5
#: Demo applications that get a sidecar runtime, in port order from RUNTIME_BASE_PORT.
RUNTIMES = ["checkout", "billing", "shipping-service"]
#: Honcho's status when it stopped everything on SIGINT (Ctrl-C) or SIGTERM.
STOPPED_BY_SIGNAL = {128 + signal.SIGINT, 128 + signal.SIGTERM}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True, env=env)  # noqa: S603


def prometheus(data_dir: Path, env: dict) -> tuple[str | None, str]:
    """The command that runs the demo's Prometheus and its URL, or None and why there is none."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None, ("Prometheus is not installed on this machine, so `make demo` could not start one. "
                      "Install Debian's prometheus package (./scripts/system-deps does, as root), then run "
                      "`make demo` again.")
    if not _port_free(PROMETHEUS_PORT):
        return None, (f"`make demo` did not start Prometheus: port {PROMETHEUS_PORT} is taken. Stop what runs "
                      "there, or set MESHADMIN_DEMO_PROMETHEUS_PORT, and run `make demo` again.")
    folder = data_dir / "prometheus"
    _manage("prometheus_config", f"--portal-url=http://127.0.0.1:{PORTAL_PORT}", f"--dir={folder}",
            f"--scrape-interval={SCRAPE_INTERVAL}", env=env)
    command = (f"{binary} --config.file={folder / 'prometheus.yml'} --storage.tsdb.path={folder / 'tsdb'} "
               f"--storage.tsdb.retention.time=8d --web.listen-address=127.0.0.1:{PROMETHEUS_PORT} "
               f"--log.level=warn")
    return command, f"http://127.0.0.1:{PROMETHEUS_PORT}"


def processes(data_dir: Path, redis_url: str) -> dict[str, str]:
    py = sys.executable
    procs = {
        "web": f"{py} -m uvicorn meshadmin.asgi:application --host 127.0.0.1 --port {PORTAL_PORT} "
               f"--no-access-log",
        "worker": f"{py} -m celery -A meshadmin worker -l INFO --concurrency 2",
        "beat": f"{py} -m celery -A meshadmin beat -l INFO -s {data_dir / 'celerybeat-schedule'}",
    }
    procs["ingest"] = f"{py} manage.py mesh ingest-heartbeats"
    for offset, application in enumerate(RUNTIMES):
        procs[f"runtime-{application}"] = (
            f"{py} -m meshruntime --application {application} --listen 127.0.0.1:{RUNTIME_BASE_PORT + offset} "
            f"--store-url {redis_url} --config-redis-url {redis_url} "
            f"--config-cache {data_dir / f'runtime-{application}.json'}"
            f" --heartbeat-interval {SCRAPE_INTERVAL}"
        )
    procs["subscriber"] = f"{py} -m meshruntime.demo.receiver --listen 127.0.0.1:{SUBSCRIBER_PORT}"
    publishers = " ".join(f"--runtime {app}=http://127.0.0.1:{RUNTIME_BASE_PORT + RUNTIMES.index(app)}"
                          for app in ("checkout", "billing"))
    procs["producer"] = f"{py} -m meshruntime.demo.producer {publishers} --keys-file {data_dir / 'demo-keys.json'}"
    return procs


def supervise(commands: dict[str, str], env: dict, cwd: Path) -> int:
    """Run ``commands`` under honcho until one ends or the user stops them all; 0 when stopped
    by Ctrl-C or SIGTERM, else the status of the process that ended first."""
    manager = Manager(Printer(sys.stdout))
    for name, command in commands.items():
        manager.add_process(name, command, env=env, cwd=str(cwd))
    manager.loop()
    return 0 if manager.returncode in STOPPED_BY_SIGNAL else manager.returncode or 0


def run(root: Path, data_dir: Path, redis_url: str) -> int:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshadmin.settings.dev", "REDIS_URL": redis_url,
           "MESHADMIN_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    _manage("migrate", "--no-input", "-v", "0", env=env)
    _manage("seed_demo", f"--subscriber-url=http://127.0.0.1:{SUBSCRIBER_PORT}/hook", env=env)
    _manage("mesh", "push", env=env)  # runtimes get their config at once, even if nothing changed
    procs = processes(data_dir, redis_url)
    command, found = prometheus(data_dir, env)
    if command is not None:
        procs["prometheus"] = command
        env = {**env, "PROMETHEUS_URL": found, "PROMETHEUS_SCRAPE_INTERVAL": str(SCRAPE_INTERVAL)}
        print(f"\n  Prometheus runs at {found}/ (targets from the portal's service discovery)", flush=True)
    else:
        env = {**env, "PROMETHEUS_UNAVAILABLE": found}
        print(f"\n  {found}", flush=True)
    print(f"\n  Meshadmin runs at http://127.0.0.1:{PORTAL_PORT}/  (Ctrl-C stops everything)\n", flush=True)
    return supervise(procs, env, root)


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    data_dir = default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    for port in (PORTAL_PORT, SUBSCRIBER_PORT):
        if not _port_free(port):
            print(f"Port {port} is in use: stop what runs there, or set MESHADMIN_PORT / "
                  f"MESHADMIN_DEMO_SUBSCRIBER_PORT.", file=sys.stderr)
            return 1
    try:
        if os.environ.get("REDIS_URL"):
            return run(root, data_dir, os.environ["REDIS_URL"])
        with private_redis(data_dir / "redis") as redis_url:  # stopped when the demo ends
            return run(root, data_dir, redis_url)
    except KeyboardInterrupt:  # Ctrl-C while migrating or loading the data: the user stopped it
        print("\n  Stopped.", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
