"""The demo subscriber that ``make demo`` starts: it runs, and answers what it verifies."""

from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
from pathlib import Path

from meshadmin import demo
from meshruntime.delivery.http1 import Http1Client
from meshruntime.delivery.signing import SIGNATURE_HEADER, signature_header


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_demo_subscriber_the_demo_starts_receives_deliveries(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(demo, "SUBSCRIBER_PORT", free_port())
    command = demo.processes(tmp_path, "redis://127.0.0.1:1/0")["subscriber"]
    process = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, text=True)
    client = Http1Client()
    try:
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("receiving on http://"), line
        url = line.split()[-1]
        body = b'{"specversion":"1.0","id":"e1","source":"/t","type":"t","data":{}}'
        headers = {"Content-Type": "application/cloudevents+json"}
        response = await client.post(url, {**headers, SIGNATURE_HEADER: signature_header("s", body)}, body, 5)
        assert response.status == 200
    finally:
        await client.close()
        process.terminate()
        process.wait(timeout=10)
