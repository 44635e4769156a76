"""Who a runtime is: its id and the version of the software it runs, the same in every report.

The id names the host and the process, so that an operator reads it in the portal at a glance,
and ends in a few random hex digits, so that a pid reused on the same host is still a new
runtime. The version has one source, the installed package's metadata (``pyproject.toml``):
``/v1/info``, heartbeats and the webhook pushes' ``User-Agent`` all say the same.
"""

from __future__ import annotations

import importlib.metadata
import os
import secrets
import socket

__all__ = ["SOFTWARE_VERSION", "default_runtime_id"]


def default_runtime_id() -> str:
    """``<host>-<pid>-<4 hex>``: readable in the portal, and distinct when a pid is reused."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def _installed_version() -> str:
    """The installed meshadmin version; ``0+unknown`` when running from a source tree."""
    try:
        return importlib.metadata.version("meshadmin")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


SOFTWARE_VERSION = _installed_version()
