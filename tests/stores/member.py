"""A member of a consumer group in a process of its own, for a test to kill (a crashed runtime).

``python -m tests.stores.member URL PREFIX TOPIC GROUP NAME COUNT VISIBILITY_S`` reads until it
holds COUNT events, prints their ids as one JSON line, then holds them until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

from meshruntime.store import open_store


async def main(url: str, prefix: str, topic: str, group: str, name: str, count: str, visibility_s: str) -> None:
    store = open_store(url, prefix=prefix, name="member", visibility_timeout_s=float(visibility_s))
    consumer = store.consumer(topic, group, name)
    held = []
    while len(held) < int(count):
        held += await consumer.read(int(count) - len(held), 500)
    sys.stdout.write(orjson.dumps([h.entry.id for h in held]).decode() + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # holds them, renewing nothing, until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
