"""Live charts: do viewers cost Prometheus queries? And how soon does a new sample reach them?

Runs the demo's mesh on a private data folder — the demo data, two demo runtimes, the demo
producer and subscriber, the heartbeat ingester, the portal under uvicorn — and a real
Prometheus (Debian's) that finds the runtimes through the portal's service discovery and
scrapes every 5 s, as ``make demo`` does. Then 50 websocket clients watch the home dashboard and
50 watch a topic's Traffic tab, over real websockets with real sessions.

Over a number of refresh intervals it prints:

- the queries Prometheus answered per refresh interval (its own
  ``prometheus_http_requests_total``), against the distinct charts on screen;
- the p99 time from a new sample in Prometheus (a scrape of a runtime) to the viewers: for each
  scrape, the time until every viewer of the home page's "Events in the mesh" chart has an
  answer computed after it (bounded below by the refresh interval's phase: polls are aligned to
  the clock, scrapes are not);
- last, the ratio of queries per refresh to distinct charts (target 1.0: viewers cost nothing).

    .venv/bin/python benchmarks/dashboard.py [--viewers 50] [--refreshes 12]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _runtime import private_data_dir, remove_data_dir  # noqa: E402

DATA_DIR = private_data_dir()
os.environ["DJANGO_SETTINGS_MODULE"] = "meshadmin.settings.test"
os.environ.pop("DATABASE_URL", None)  # a SQLite file in the private folder, which uvicorn opens too
os.environ.pop("REDIS_URL", None)  # and a private Redis there: the demo seed writes the default key prefix
os.environ["MESHADMIN_EMBEDDED_REDIS"] = "redis"
os.environ["PROMETHEUS_SCRAPE_INTERVAL"] = "5"  # as the demo: the portal and this script agree on the refresh

import django  # noqa: E402

django.setup()

import websockets  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from meshadmin.embedded import using_private_redis  # noqa: E402
from tests.portal_support import prometheus as prometheus_support  # noqa: E402
from tests.portal_support.live_portal import uvicorn_portal  # noqa: E402
from tests.portal_support.runtimes import RuntimeProcess  # noqa: E402
from tests.portal_support.waiting import free_port, wait_for  # noqa: E402
from tracing.prometheus_config import render  # noqa: E402

SCRAPE = int(os.environ["PROMETHEUS_SCRAPE_INTERVAL"])
RUNTIMES = ("checkout", "billing")


def seed(data: Path) -> dict:
    from django.contrib.auth.models import User

    from meshadmin.models import APIToken
    from rollout import push
    from topics.models import Topic

    call_command("migrate", verbosity=0)
    call_command("seed_demo", keys_file=str(data / "demo-keys.json"),
                 subscriber_url=f"http://127.0.0.1:{SUBSCRIBER_PORT}/hook", stdout=io.StringIO())
    assert push.push().outcome in ("published", "unchanged", "republished")
    token = APIToken(user=User.objects.get(username="admin"), read_only=True, description="bench prometheus")
    key = token.generate()
    token.save()
    (data / "token").write_text(key)
    cookies = []
    for name in ("admin", "alice", "bob", "carol", "dave", "erin"):
        client = Client()
        client.force_login(User.objects.get(username=name))
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    topic = Topic.objects.get(name="orders.created")
    return {"cookies": cookies, "topic": topic.pk}


SUBSCRIBER_PORT = free_port()


def spawn(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Viewer:
    def __init__(self, url: str, cookie: str, charts: list[tuple[str, int | None]]) -> None:
        self.url, self.cookie, self.charts = url, cookie, charts
        self.answers: list[tuple[float, dict]] = []  # (receive time, message)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        origin = self.url.replace("ws://", "http://").split("/ws/")[0]
        async with websockets.connect(self.url, additional_headers={"Cookie": self.cookie, "Origin": origin},
                                      max_size=None) as socket:
            await socket.send(json.dumps({"watch": [{"id": f"c{n}", "chart": c, "object": o}
                                                    for n, (c, o) in enumerate(self.charts)], "range": "15m"}))
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), 1)
                except TimeoutError:
                    continue
                message = json.loads(raw)
                if message.get("type") == "data":
                    self.answers.append((time.time(), message))


def scrape_times(prometheus, since: float, until: float) -> list[float]:
    """When Prometheus scraped the checkout runtime (its samples' timestamps), read once at the end."""
    result = prometheus.get("/api/v1/query", query='up{mesh_application="checkout"}[10m]')["data"]["result"]
    return sorted(float(t) for series in result for t, _v in series["values"] if since <= float(t) <= until)


async def watch(portal: str, cookies: list[str], topic: int, viewers: int, refreshes: int, prometheus) -> dict:
    from tracing import charts

    home = [(c.name, None) for c in charts.charts_for(None)]
    traffic = [(c.name, topic) for c in charts.TOPIC_CHARTS]
    url = portal.replace("http://", "ws://") + "/ws/charts/"
    crowd = [Viewer(url, cookies[n % len(cookies)], home) for n in range(viewers)]
    crowd += [Viewer(url, cookies[n % len(cookies)], traffic) for n in range(viewers)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(v.run(stop)) for v in crowd]
    # warm up: every viewer has every chart, and the pollers tick on the clock
    deadline = time.monotonic() + 90
    while any(len({m["id"] for _t, m in v.answers}) < len(v.charts) for v in crowd):
        if time.monotonic() > deadline:
            raise SystemExit("the viewers did not get their charts within 90 s")
        await asyncio.sleep(0.2)
    refresh = charts.RANGES["15m"].scaled()[1]
    await asyncio.sleep(refresh - time.time() % refresh + refresh / 2)  # mid-way between two ticks
    before = await asyncio.to_thread(prometheus.queries_answered)
    started = time.time()
    await asyncio.sleep(refreshes * refresh)
    after = await asyncio.to_thread(prometheus.queries_answered)
    ended = time.time()
    await asyncio.sleep(2)  # the last answers reach the viewers
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"crowd": crowd, "queries": after - before, "started": started, "ended": ended, "refresh": refresh,
            "distinct": len(home) + len(traffic)}


def sample_to_viewer(crowd: list[Viewer], scrapes: list[float]) -> list[float]:
    """For each scrape and each home viewer: from the scrape to the first "Events in the mesh"
    answer that covers it."""
    delays = []
    for viewer in crowd:
        # a range query's answer holds the samples up to its ``end`` (the poll's tick)
        answers = sorted((m["end"], t) for t, m in viewer.answers
                         if m["chart"] == "mesh.events" and m.get("end") and not m.get("error"))
        for scrape in scrapes:
            later = next((received for end, received in answers if end >= scrape), None)
            if later is not None:
                delays.append(later - scrape)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=50, help="viewers per page (default 50)")
    parser.add_argument("--refreshes", type=int, default=12, help="refresh intervals measured (default 12)")
    args = parser.parse_args()
    binary = prometheus_support.binary()
    if binary is None:
        raise SystemExit("Debian's prometheus is not installed: run ./scripts/system-deps as root")
    data = Path(DATA_DIR or settings.DATA_DIR)
    seeded = seed(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": settings.REDIS_URL, "MESHADMIN_DATA_DIR": str(data)}
    prometheus = prometheus_support.PrometheusServer(data / "prometheus", binary)
    processes: list[subprocess.Popen] = []
    runtimes: list[RuntimeProcess] = []
    database = f"sqlite:///{settings.DATABASES['default']['NAME']}"
    with uvicorn_portal(database, settings.REDIS_URL, settings.MESH_KEY_PREFIX, PROMETHEUS_URL=prometheus.url,
                        PROMETHEUS_SCRAPE_INTERVAL=str(SCRAPE), MESHADMIN_DATA_DIR=str(data)) as portal:
        try:
            prometheus.start(render(portal, data / "token", scrape_interval=SCRAPE))
            processes.append(spawn("manage.py", "mesh", "ingest-heartbeats", env=env))
            processes.append(spawn("-m", "meshruntime.delivery.receiver", "--listen", f"127.0.0.1:{SUBSCRIBER_PORT}",
                                   env=env))
            for app in RUNTIMES:
                runtimes.append(RuntimeProcess(["--application", app, "--listen", "127.0.0.1:0", "--store-url",
                                                settings.REDIS_URL, "--config-redis-url", settings.REDIS_URL,
                                                "--heartbeat-interval", str(SCRAPE), "--log-level", "WARNING"]))
            processes.append(spawn("-m", "meshruntime.demo.producer",
                                   *(a for app, r in zip(RUNTIMES, runtimes, strict=True)
                                     for a in ("--runtime", f"{app}={r.url}")),
                                   "--keys-file", str(data / "demo-keys.json"), env=env))
            wait_for(lambda: len([t for t in prometheus.active_targets() if t["health"] == "up"]) >= 3, 90,
                     "Prometheus to scrape both runtimes and the portal", interval=0.5)
            result = asyncio.run(watch(portal, seeded["cookies"], seeded["topic"], args.viewers, args.refreshes,
                                       prometheus))
            scrapes = scrape_times(prometheus, result["started"] - result["refresh"], result["ended"])
        finally:
            for process in processes:
                process.terminate()
            for runtime in runtimes:
                runtime.stop()
            for process in processes:
                process.wait(30)
            prometheus.stop()

    crowd = result["crowd"]
    per_refresh = result["queries"] / args.refreshes
    home_viewers = [v for v in crowd if v.charts[0][1] is None]
    delays = sorted(sample_to_viewer(home_viewers, scrapes))
    p99 = delays[int(0.99 * (len(delays) - 1))] if delays else float("nan")
    messages = sum(len(v.answers) for v in crowd)
    print(f"viewers: {len(crowd)} ({args.viewers} on the home dashboard, {args.viewers} on a Traffic tab); "
          f"distinct charts: {result['distinct']}; refresh every {result['refresh']} s; Prometheus scrapes every "
          f"{SCRAPE} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"chart answers received by the viewers: {messages}")
    print(f"Prometheus queries: {result['queries']} in {args.refreshes} refresh intervals = {per_refresh:.1f} "
          f"per refresh")
    print(f"new sample -> viewers: median {statistics.median(delays):.2f} s, p99 {p99:.2f} s "
          f"({len(delays)} sample-viewer pairs from {len(scrapes)} scrapes)")
    print(f"queries per refresh / distinct charts (target 1.0): {per_refresh / result['distinct']:.2f}")


if __name__ == "__main__":
    try:
        with using_private_redis(settings.EMBEDDED_REDIS_DIR):  # the seed writes to it before uvicorn starts
            main()
    finally:
        remove_data_dir(DATA_DIR)
