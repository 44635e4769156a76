"""What the portal imports from meshruntime loads neither the runtime's engine nor its asyncio helpers.

A Celery worker seals and publishes documents, and the subscription page reads delivery state:
both go through modules meant for the portal, which must stay small, so that the runtime's
internals (the config watcher, the patch machinery, the delivery engine) can change freely.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after_importing(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules`` (nothing else)."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(done.stdout.split())


def test_the_portal_seals_and_publishes_without_the_runtimes_machinery() -> None:
    loaded = _modules_after_importing("meshruntime.config", "meshruntime.config_publish")
    assert {"meshruntime.config", "meshruntime.config_publish"} <= loaded
    assert not loaded & {"meshruntime.config_watcher", "meshruntime.background", "meshruntime.patch"}
    assert "asyncio" not in _modules_after_importing("meshruntime.config")


def test_the_portal_reads_delivery_state_without_the_delivery_engine() -> None:
    loaded = _modules_after_importing("meshruntime.delivery_admin")
    assert not {name for name in loaded if name.startswith(("meshruntime.delivery.", "meshruntime.store"))}
    assert "meshruntime.delivery" not in loaded
