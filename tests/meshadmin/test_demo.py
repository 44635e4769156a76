"""The demo data loads on an empty database and loading it again changes nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from governance.models import Application, ApplicationKey
from meshadmin.models import AuditEntry, Team
from subscriptions.models import Subscription
from topics.models import Topic

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_writes_the_demo_keys(tmp_path, settings):
    keys_file = tmp_path / "demo-keys.json"
    settings.DATA_DIR = tmp_path
    call_command("seed_demo", keys_file=str(keys_file), stdout=io.StringIO())
    counts = (Topic.objects.count(), Team.objects.count(), Application.objects.count(),
              ApplicationKey.objects.count(), Subscription.objects.count())
    assert 45 <= counts[0] <= 60 and counts[1] == 3
    keys = json.loads(keys_file.read_text())
    assert set(keys) == set(Application.objects.values_list("name", flat=True))
    entries = AuditEntry.objects.count()

    out = io.StringIO()
    call_command("seed_demo", keys_file=str(keys_file), stdout=out)
    assert (Topic.objects.count(), Team.objects.count(), Application.objects.count(),
            ApplicationKey.objects.count(), Subscription.objects.count()) == counts
    assert AuditEntry.objects.count() == entries
    assert "password" in out.getvalue()
