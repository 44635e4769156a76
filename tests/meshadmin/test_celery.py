"""Every task the beat schedule names exists, and every task is named after where it lives."""

from __future__ import annotations

from django.conf import settings

from meshadmin import celery_app


def project_tasks() -> dict:
    celery_app.loader.import_default_modules()  # autodiscovery: every app's tasks module
    return {name: task for name, task in celery_app.tasks.items() if not name.startswith("celery.")}


def test_the_beat_schedule_names_registered_tasks():
    tasks = project_tasks()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {"rollout.tasks.reconcile_config", "rollout.tasks.prune_config_documents"}
    assert scheduled <= tasks.keys()


def test_every_task_is_named_after_its_module():
    tasks = project_tasks()
    # the mail of every kind of review (subscriptions, their changes, routing rules) is one task
    assert {"rollout.tasks.push_config", "meshadmin.tasks.send_notice"} <= tasks.keys()
    assert {name: f"{task.__module__}.{task.__name__}" for name, task in tasks.items()} == \
        {name: name for name in tasks}
