"""A real ``python -m meshruntime`` process, for the tests that run one beside the portal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class RuntimeProcess:
    """Starts the runtime with ``args`` and waits for the one line it prints once it listens."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            [sys.executable, "-m", "meshruntime", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        if "listening on http://" not in line:
            self.process.kill()
            raise AssertionError(f"no 'listening' line: {line!r}; stderr: {self.process.stderr.read()}")
        self.url = line.rsplit("listening on ", 1)[1].strip()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
