"""``manage.py mesh <command>``: the mesh configuration and its runtimes from a shell.

    mesh export-config [--version N] [--output FILE] [--include-secrets]
                                                      the document of the database's current
                                                      state (as published, or as the next
                                                      version would carry it), or a recorded one;
                                                      signing secrets and key digests redacted
                                                      unless --include-secrets (audited)
    mesh status [--json]                              runtimes and their convergence
    mesh push [--force]                               compile and publish now (what the task does)
    mesh ingest-heartbeats                            the registry's ingester (a Procfile line)
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from meshadmin.audit import record_export
from meshadmin.embedded import using_private_redis
from meshruntime.config import ConfigError, canonical_json, seal, validate_document
from rollout import push
from rollout.disclosure import redact
from rollout.live import serialize, version_summary
from rollout.models import ConfigVersion, Runtime
from rollout.registry import HeartbeatIngester


class Command(BaseCommand):
    help = "The mesh configuration and its runtimes: export-config, status, push, ingest-heartbeats."

    def add_arguments(self, parser) -> None:
        commands = parser.add_subparsers(dest="command", required=True, metavar="command")
        export = commands.add_parser("export-config", help="print the MeshConfig document (JSON)")
        export.add_argument("--version", type=int, dest="config_version",
                            help="a recorded version instead of the current compile")
        export.add_argument("--output", "-o", help="write to this file instead of standard output")
        export.add_argument("--indent", type=int, default=2, help="0 for the canonical, compact form")
        export.add_argument("--include-secrets", action="store_true",
                            help="keep subscriptions' signing secrets and key digests (what a runtime needs); "
                                 "recorded in the audit log")
        status = commands.add_parser("status", help="print the runtimes and their convergence")
        status.add_argument("--json", action="store_true", dest="as_json",
                            help="as JSON (the API's runtime objects)")
        pusher = commands.add_parser("push", help="compile and publish now")
        pusher.add_argument("--force", action="store_true",
                            help="as 'push now': also replace a rollback, and re-announce when unchanged")
        ingest = commands.add_parser("ingest-heartbeats", help="read runtime heartbeats until stopped")
        ingest.add_argument("--consumer", help="this reader's name in the consumer group (default per host)")

    def handle(self, *args, command: str, **options) -> None:
        getattr(self, "handle_" + command.replace("-", "_"))(**options)

    # -- export-config ---------------------------------------------------------------------------

    def handle_export_config(self, config_version=None, output=None, indent=2, include_secrets=False,
                             **options) -> None:
        if config_version is not None:
            rows = ConfigVersion.objects.filter(version=config_version).values_list("document", flat=True)
            if not rows:
                raise CommandError(f"There is no config version {config_version}.")
            document = rows[0]
            if document is None:
                raise CommandError(f"Config version {config_version} keeps no document: {push.PRUNED}")
        else:
            latest = push.latest_version()
            body = push.compile_snapshot()
            document = seal(body, (latest.version if latest else 0) + 1)
            try:
                validate_document(document)
            except ConfigError as error:
                raise CommandError(f"The database does not compile to a valid document: {error}") from None
            if latest is not None and latest.checksum == document["checksum"]:
                # Published already: print exactly what the runtimes hold.
                document = ConfigVersion.objects.values_list("document", flat=True).get(pk=latest.pk)
            else:
                self.stderr.write(f"Not published yet: the database's current state, as version "
                                  f"{document['version']} would carry it.")
        if include_secrets:
            record_export(ConfigVersion, str(document["version"]), f"config version {document['version']}",
                          actor_name=f"{getpass.getuser()}@{socket.gethostname()} (manage.py mesh export-config)",
                          include_secrets=True, checksum=document["checksum"], output=output or "standard output")
        else:
            document = redact(document)
            self.stderr.write("Signing secrets and key digests are redacted: a runtime refuses this document. "
                              "--include-secrets keeps them (and is recorded in the audit log).")
        text = canonical_json(document).decode() if not indent else json.dumps(document, indent=indent,
                                                                               ensure_ascii=False)
        if output:
            # Secrets or not, only the file's owner reads it.
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.stderr.write(f"Wrote version {document['version']} ({document['checksum'][:12]}) to {output}.")
        else:
            self.stdout.write(text)

    # -- status ----------------------------------------------------------------------------------

    def handle_status(self, as_json=False, **options) -> None:
        latest = push.latest_version()
        runtimes = list(Runtime.objects.all())
        if as_json:
            self.stdout.write(json.dumps({"latest": version_summary(latest),
                                          "runtimes": serialize(runtimes, latest)}, indent=2))
            return
        status = push.last_status()
        if latest is None:
            self.stdout.write("Latest config version: none yet")
        else:
            self.stdout.write(f"Latest config version: {latest.version} ({latest.checksum[:12]}), "
                              f"{latest.created:%Y-%m-%d %H:%M:%S} UTC by {latest.actor_name or 'system'}: "
                              f"{latest.reason}")
        if status and status["outcome"] == "failed":
            self.stdout.write(self.style.ERROR(f"Last push failed ({status['at'][:19]}): {status['error']}"))
        now = timezone.now()
        version = latest.version if latest else None
        live = [r for r in runtimes if r.state_at(now) != Runtime.GONE]
        in_sync = sum(1 for r in live if r.sync_with(version) == Runtime.IN_SYNC)
        self.stdout.write(f"Runtimes: {len(live)} reporting, {in_sync} in sync"
                          f"{', ' + str(len(runtimes) - len(live)) + ' gone' if len(runtimes) > len(live) else ''}")
        if not runtimes:
            return
        header = f"{'APPLICATION':<20} {'HOST':<20} {'RUNTIME':<32} {'CONFIG':>7} {'SYNC':<8} {'STATE':<8} LAST SEEN"
        self.stdout.write(header)
        for r in runtimes:
            sync = r.sync_with(version)
            line = (f"{(r.application or '(gateway)')[:20]:<20} {r.host[:20]:<20} {r.runtime_id[:32]:<32} "
                    f"{'-' if r.config_version is None else r.config_version:>7} {sync:<8} {r.state_at(now):<8} "
                    f"{int((now - r.last_seen).total_seconds())} s ago")
            style = self.style.SUCCESS if sync == Runtime.IN_SYNC else (
                self.style.ERROR if sync == Runtime.ERROR else self.style.WARNING)
            self.stdout.write(style(line))
            if r.last_error:
                self.stdout.write(f"    error: {r.last_error}")

    # -- push ------------------------------------------------------------------------------------

    def handle_push(self, force=False, **options) -> None:
        try:
            result = push.push(ConfigVersion.MANUAL if force else ConfigVersion.PUSH, force=force, wait=30.0)
        except push.PushBusy:
            raise CommandError("Another push holds the lock; try again.") from None
        if result.outcome == "failed":
            raise CommandError(f"Not published: {result.error}")
        self.stdout.write(f"{result.outcome}: version {result.version}")

    # -- ingest-heartbeats -----------------------------------------------------------------------

    def handle_ingest_heartbeats(self, consumer=None, **options) -> None:
        ingester = HeartbeatIngester(consumer=consumer)

        def stop(signum, frame):
            ingester.stopped = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        with using_private_redis(settings.EMBEDDED_REDIS_DIR):  # on the embedded defaults
            ingester.run()
        sys.stdout.flush()
