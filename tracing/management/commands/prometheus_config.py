"""``manage.py prometheus_config``: a Prometheus configuration that finds the mesh through the portal.

Makes (or reuses) a service user, gives it a fresh read-only API token (its earlier tokens made
by this command are deleted), writes the token to a file only its owner can read, and writes a
``prometheus.yml`` whose only jobs are the portal's service discovery (tracing.prometheus_config).
``make demo`` runs it before starting Prometheus.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from meshadmin.models import APIToken
from tracing import prometheus_config

TOKEN_DESCRIPTION = "Prometheus service discovery (manage.py prometheus_config)"  # noqa: S105 - a label


class Command(BaseCommand):
    help = "Write a prometheus.yml that discovers the runtimes through this portal, with a read-only token."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--portal-url", default="http://127.0.0.1:8000",
                            help="the portal as Prometheus reaches it (default http://127.0.0.1:8000)")
        parser.add_argument("--dir", type=Path, required=True,
                            help="where to write prometheus.yml and the token file")
        parser.add_argument("--scrape-interval", type=int, default=5, help="seconds (default 5)")
        parser.add_argument("--user", default="prometheus", help="the service user that owns the token")

    def handle(self, *args, portal_url: str, dir: Path, scrape_interval: int, user: str, **options) -> None:
        if not portal_url.startswith(("http://", "https://")):
            raise CommandError(f"--portal-url must be an http(s) URL, not {portal_url!r}")
        if scrape_interval < 1:
            raise CommandError("--scrape-interval must be at least 1 second")
        dir.mkdir(parents=True, exist_ok=True)
        with transaction.atomic():
            account, created = get_user_model().objects.get_or_create(username=user)
            if created:
                account.set_unusable_password()  # it signs in with its token only
                account.save()
            APIToken.objects.filter(user=account, description=TOKEN_DESCRIPTION).delete()
            token = APIToken(user=account, description=TOKEN_DESCRIPTION, read_only=True)
            key = token.generate()
            token.save()
        token_file = dir / "token"
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key)
        token_file.chmod(0o600)  # a file left from before keeps its mode otherwise
        config = dir / "prometheus.yml"
        config.write_text(prometheus_config.render(portal_url, token_file.resolve(), scrape_interval=scrape_interval))
        self.stdout.write(f"wrote {config} (token of user {user!r} in {token_file})")
