"""A demo producer: a few events per second through the demo runtimes, now and then a refused one.

    python -m meshruntime.demo.producer \\
        --runtime checkout=http://127.0.0.1:8200 --runtime billing=http://127.0.0.1:8201 \\
        --keys-file data/demo-keys.json --rate 3

Keys come from ``--key APP=KEY``, the ``--keys-file`` the demo seed writes (``{"app": "key"}``),
or ``MESH_DEMO_KEYS_FILE``. Each application publishes through its own sidecar. The scenarios
use the demo catalog (meshadmin's ``seed_demo``): checkout publishes orders (structured, binary,
batch and EventMesh style), billing publishes payments and invoices, and about one event in
eight is refused on purpose -- a denied topic, a topic without a rule, data that fails the
order schema -- so that the portal's live views show refusals too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

log = logging.getLogger("meshruntime.demo.producer")

DEFAULT_RUNTIMES = {"checkout": "http://127.0.0.1:8200", "billing": "http://127.0.0.1:8201"}


@dataclass(frozen=True)
class Scenario:
    application: str
    topic: str
    mode: str  # structured | binary | batch | eventmesh
    make: Any  # rng -> data
    expect: int  # the status we expect (202, or the refusal)
    note: str = ""


def _order(rng: random.Random) -> dict[str, Any]:
    return {"order_id": f"o-{rng.randrange(10**6):06d}", "amount": round(rng.uniform(5, 500), 2),
            "currency": rng.choice(["EUR", "USD", "GBP"])}


def _payment(rng: random.Random) -> dict[str, Any]:
    return {"payment_id": f"p-{rng.randrange(10**6):06d}", "amount": round(rng.uniform(5, 500), 2),
            "method": rng.choice(["card", "sepa", "wallet"])}


SCENARIOS = [
    Scenario("checkout", "orders.created", "structured", _order, 202),
    Scenario("checkout", "orders.updated", "binary", _order, 202),
    Scenario("billing", "payments.created", "structured", _payment, 202),
    Scenario("checkout", "orders.completed", "batch", _order, 202),
    Scenario("billing", "invoices.created", "binary", _payment, 202),
    Scenario("checkout", "orders.created", "eventmesh", _order, 202),
    Scenario("billing", "payments.completed", "structured", _payment, 202),
    Scenario("checkout", "orders.cancelled", "structured", _order, 202),
]
REFUSALS = [
    Scenario("checkout", "orders.failed", "structured", _order, 403, "a deny rule"),
    Scenario("checkout", "payments.created", "structured", _payment, 403, "no rule allows it"),
    Scenario("checkout", "orders.created", "structured", lambda rng: {**_order(rng), "amount": -1}, 400,
             "fails the order schema"),
]


def scenarios(rng: random.Random, refusal_every: int) -> Iterator[Scenario]:
    for n in itertools.count(1):
        if refusal_every and n % refusal_every == 0:
            yield rng.choice(REFUSALS)
        else:
            yield SCENARIOS[n % len(SCENARIOS)]


def _cloudevent(scenario: Scenario, data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/demo/{scenario.application}",
        "type": f"com.example.{scenario.topic}", "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "datacontenttype": "application/json", "data": data,
    }


def build_request(scenario: Scenario, rng: random.Random, key: str) -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of one publish in the scenario's mode."""
    auth = {"Authorization": f"Bearer {key}"}
    data = scenario.make(rng)
    path = f"/v1/topics/{scenario.topic}/events"
    if scenario.mode == "eventmesh":
        return (f"/eventmesh/publish/{scenario.topic}",
                {**auth, "producergroup": f"{scenario.application}-demo", "Content-Type": "application/json"},
                orjson.dumps(data))
    if scenario.mode == "batch":
        events = [_cloudevent(scenario, scenario.make(rng)) for _ in range(3)]
        return path, {**auth, "Content-Type": "application/cloudevents-batch+json"}, orjson.dumps(events)
    event = _cloudevent(scenario, data)
    if scenario.mode == "binary":
        headers = {f"ce-{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
        return path, {**auth, **headers, "Content-Type": "application/json"}, orjson.dumps(data)
    return path, {**auth, "Content-Type": "application/cloudevents+json"}, orjson.dumps(event)


async def publish(session: aiohttp.ClientSession, runtime: str, scenario: Scenario, rng: random.Random,
                  key: str) -> tuple[int, str]:
    path, headers, body = build_request(scenario, rng, key)
    async with session.post(runtime + path, data=body, headers=headers) as response:
        text = await response.text()
        if scenario.mode == "eventmesh":
            reply = json.loads(text)
            return (202 if reply.get("retCode") == 0 else 400), reply.get("retMsg", "")
        try:
            return response.status, json.loads(text).get("message", "")
        except ValueError:
            return response.status, text[:200]


async def wait_for(session: aiohttp.ClientSession, runtimes: dict[str, str], timeout: float) -> None:
    """Wait until every runtime is ready (they start alongside the producer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = dict(runtimes)
    delay = 0.2
    while pending:
        for app, url in list(pending.items()):
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        log.info("runtime of %s is ready at %s", app, url)
                        del pending[app]
            except aiohttp.ClientError:
                pass
        if pending:
            if loop.time() > deadline:
                raise SystemExit(f"runtimes not ready after {timeout:.0f}s: {', '.join(pending)}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)


def load_keys(args: argparse.Namespace) -> dict[str, str]:
    keys: dict[str, str] = {}
    keys_file = args.keys_file or os.environ.get("MESH_DEMO_KEYS_FILE")
    if keys_file and Path(keys_file).exists():
        keys.update(json.loads(Path(keys_file).read_text()))
    for item in args.key or ():
        app, _, key = item.partition("=")
        keys[app] = key
    return keys


async def run(args: argparse.Namespace) -> dict[str, int]:
    runtimes = dict(DEFAULT_RUNTIMES)
    for item in args.runtime or ():
        app, _, url = item.partition("=")
        runtimes[app] = url.rstrip("/")
    keys = load_keys(args)
    missing = [app for app in runtimes if app not in keys]
    if missing:
        raise SystemExit(f"no key for {', '.join(missing)}: pass --key APP=KEY or --keys-file")
    rng = random.Random(args.seed)
    counts = {"sent": 0, "accepted": 0, "refused": 0, "unexpected": 0}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await wait_for(session, runtimes, args.wait)
        for scenario in scenarios(rng, args.refusal_every):
            if args.count and counts["sent"] >= args.count:
                break
            if scenario.application not in runtimes:
                continue
            started = asyncio.get_running_loop().time()
            try:
                status, message = await publish(session, runtimes[scenario.application], scenario, rng,
                                                keys[scenario.application])
            except (aiohttp.ClientError, TimeoutError) as error:
                status, message = 0, f"runtime unreachable: {error}"
            counts["sent"] += 1
            counts["accepted" if status == 202 else "refused"] += 1
            if status != scenario.expect:
                counts["unexpected"] += 1
            suffix = f" (on purpose: {scenario.note})" if scenario.note else ""
            log.info("%-9s %-10s -> %-18s %s %s%s", scenario.application, scenario.mode, scenario.topic, status,
                     message, suffix)
            if args.rate > 0:
                wait = 1 / args.rate - (asyncio.get_running_loop().time() - started)
                if wait > 0:
                    await asyncio.sleep(wait)
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="meshruntime.demo.producer", description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", action="append", metavar="APP=URL",
                   help="an application and its runtime (default: checkout :8200, billing :8201)")
    p.add_argument("--key", action="append", metavar="APP=KEY", help="an application's key")
    p.add_argument("--keys-file", help="JSON {app: key} written by the demo seed [MESH_DEMO_KEYS_FILE]")
    p.add_argument("--rate", type=float, default=3.0, help="events per second (default 3; 0: as fast as it goes)")
    p.add_argument("--refusal-every", type=int, default=8, help="every n-th event is refused on purpose (0: never)")
    p.add_argument("--count", type=int, default=0, help="stop after this many publishes (default: run forever)")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the runtimes to be ready")
    p.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    try:
        counts = asyncio.run(run(args))
    except KeyboardInterrupt:
        return
    log.info("done: %s", counts)
    if counts["unexpected"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
