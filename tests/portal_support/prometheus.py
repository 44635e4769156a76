"""A real Prometheus (Debian's ``prometheus`` package) on a free port, with a generated config.

The tests of the charts and the service discovery, and ``benchmarks/dashboard.py``, run one:
``PrometheusServer(folder, config_text).start()``. It counts the queries it answers itself
(``prometheus_http_requests_total`` on its own ``/metrics``), which is how the tests prove that
fifty viewers cost one query per chart. ``serving_metrics`` is what such a Prometheus scrapes when
a test writes the series itself: an exporter of a ``prometheus_client`` registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tests.portal_support.waiting import free_port

ROOT = Path(__file__).resolve().parents[2]
QUERY_HANDLERS = ("/api/v1/query", "/api/v1/query_range")


def binary() -> str | None:
    """The prometheus executable, installing Debian's package first when it is missing and we may
    (``scripts/system-deps``, as ``make test`` does); None if it still is not there."""
    found = shutil.which("prometheus")
    if found is None:
        subprocess.run([str(ROOT / "scripts" / "system-deps")], check=False, capture_output=True)  # noqa: S603
        found = shutil.which("prometheus")
    return found


class PrometheusServer:
    """Its port (and ``url``) is chosen when made, so that what it scrapes can be told where it
    is before it starts: ``PrometheusServer(folder, binary)``, then ``start(config_text)``."""

    def __init__(self, folder: Path, executable: str) -> None:
        self.folder = folder
        self.config = folder / "prometheus.yml"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.executable = executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = folder / "prometheus.log"

    def start(self, config: str, timeout: float = 30) -> PrometheusServer:
        self.config.write_text(config)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the system's binary, our own arguments
                [self.executable, f"--config.file={self.config}", f"--storage.tsdb.path={self.folder / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:  # noqa: S310
            return json.loads(response.read())

    def query(self, promql: str) -> list[dict]:
        """An instant query, straight to Prometheus (counted under ``/api/v1/query`` too)."""
        return self.get("/api/v1/query", query=promql)["data"]["result"]

    def active_targets(self) -> list[dict]:
        return self.get("/api/v1/targets", state="active")["data"]["activeTargets"]

    def queries_answered(self) -> int:
        """Queries (instant and range) Prometheus has answered since it started, read from its own
        ``/metrics`` so that reading it is not a query itself."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith("prometheus_http_requests_total{"):
                handler = re.search(r'handler="([^"]*)"', line)
                if handler and handler.group(1) in QUERY_HANDLERS:
                    total += int(float(line.rsplit(" ", 1)[1]))
        return total


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def serving_metrics(registry: CollectorRegistry, before_scrape: Callable[[], None] = lambda: None) -> Iterator[str]:
    """An exporter of ``registry`` over HTTP, as a runtime's ``/metrics`` is scraped; yields its
    ``host:port`` target. ``before_scrape`` runs as each scrape arrives (a series that grows by a
    fixed step per scrape, say)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            before_scrape()
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
