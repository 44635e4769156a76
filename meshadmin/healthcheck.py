"""``python -m meshadmin.healthcheck``: the container healthchecks of docker-compose.yml.

The image is slim (no curl, no wget, no procps), and a check should test what the service is for,
not only that its process exists, so each check is a few lines of standard library here:

    http URL [--contains TEXT]     the URL answers 2xx (and its body contains TEXT)
    tcp HOST:PORT                  something accepts connections there
    fresh GLOB SECONDS             a file matching GLOB was written within SECONDS (beat's schedule)
    runtimes                       `manage.py mesh status --json` on stdin lists a healthy runtime

Exit status 0 is healthy, 1 is not (with the reason on stderr). No Django import.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

TIMEOUT = 5.0


class Unhealthy(Exception):
    pass


def check_http(url: str, contains: str | None = None) -> None:
    if not url.startswith(("http://", "https://")):
        raise Unhealthy(f"{url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - scheme checked above
            body = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        raise Unhealthy(f"{url}: {error}") from None
    if contains is not None and contains not in body:
        raise Unhealthy(f"{url} answered without {contains!r}")


def check_tcp(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise Unhealthy(f"{address!r} is not HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=TIMEOUT).close()
    except OSError as error:
        raise Unhealthy(f"{address}: {error}") from None


def check_fresh(pattern: str, seconds: float) -> None:
    files = glob.glob(pattern)
    if not files:
        raise Unhealthy(f"no file matches {pattern}")
    age = time.time() - max(os.path.getmtime(path) for path in files)
    if age > seconds:
        raise Unhealthy(f"{pattern} last written {age:.0f} s ago (more than {seconds:g} s)")


def check_runtimes(status_json: str) -> None:
    try:
        runtimes = json.loads(status_json)["runtimes"]
    except (ValueError, KeyError, TypeError):
        raise Unhealthy("stdin is not the output of `manage.py mesh status --json`") from None
    if not any(runtime.get("state") == "healthy" for runtime in runtimes):
        raise Unhealthy(f"no runtime reports as healthy ({len(runtimes)} known)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshadmin.healthcheck", description=__doc__.split("\n\n")[0])
    checks = parser.add_subparsers(dest="check", required=True)
    http = checks.add_parser("http")
    http.add_argument("url")
    http.add_argument("--contains")
    checks.add_parser("tcp").add_argument("address")
    fresh = checks.add_parser("fresh")
    fresh.add_argument("pattern")
    fresh.add_argument("seconds", type=float)
    checks.add_parser("runtimes")
    args = parser.parse_args(argv)
    try:
        if args.check == "http":
            check_http(args.url, args.contains)
        elif args.check == "tcp":
            check_tcp(args.address)
        elif args.check == "fresh":
            check_fresh(args.pattern, args.seconds)
        else:
            check_runtimes(sys.stdin.read())
    except Unhealthy as problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
