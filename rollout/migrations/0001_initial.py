"""ConfigVersion and Runtime, taken over from governance with their rows.

governance.0005 renamed their tables to this app's names; here only the migration state learns
the models, and their content types follow them, so that the audit log's entries and the
permissions of existing rows name ``rollout`` models.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import rollout.fields

MOVED = ("configversion", "runtime")


def _move_content_types(apps, schema_editor, source, target):
    ContentType = apps.get_model("contenttypes", "ContentType")
    AuditEntry = apps.get_model("meshadmin", "AuditEntry")
    db = schema_editor.connection.alias
    for model in MOVED:
        old = ContentType.objects.using(db).filter(app_label=source, model=model).first()
        if old is None:
            continue
        new = ContentType.objects.using(db).filter(app_label=target, model=model).first()
        if new is None:
            old.app_label = target
            old.save(update_fields=["app_label"])
        else:  # both exist (the target was made by an earlier run): keep the target's, move the log to it
            AuditEntry.objects.using(db).filter(object_type=old).update(object_type=new)
            old.delete()


def content_types_forward(apps, schema_editor):
    _move_content_types(apps, schema_editor, "governance", "rollout")


def content_types_backward(apps, schema_editor):
    _move_content_types(apps, schema_editor, "rollout", "governance")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('governance', '0005_move_rollout_models'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('meshadmin', '0002_audit_team_without_constraint'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],  # the tables are there, renamed by governance.0005
            state_operations=[
                migrations.CreateModel(
                    name='Runtime',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('runtime_id', models.CharField(max_length=200, unique=True)),
                        ('application', models.CharField(blank=True, help_text='Empty for a gateway.', max_length=100)),
                        ('host', models.CharField(blank=True, max_length=255)),
                        ('pid', models.PositiveIntegerField(blank=True, null=True)),
                        ('software_version', models.CharField(blank=True, max_length=100)),
                        ('config_version', models.PositiveIntegerField(blank=True, null=True)),
                        ('config_checksum', models.CharField(blank=True, max_length=64)),
                        ('last_error', models.TextField(blank=True)),
                        ('counters', models.JSONField(blank=True, default=dict)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('first_seen', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_seen', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ],
                    options={
                        'ordering': ['application', 'host', 'runtime_id'],
                    },
                ),
                migrations.CreateModel(
                    name='ConfigVersion',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('version', models.PositiveIntegerField(unique=True)),
                        ('checksum', models.CharField(max_length=64)),
                        ('source_checksum', models.CharField(max_length=64)),
                        ('document', rollout.fields.DocumentField(null=True)),
                        ('pruned', models.BooleanField(default=False, help_text='The document was dropped to save space.')),
                        ('kind', models.CharField(choices=[('push', 'Change'), ('manual', 'Push now'), ('rollback', 'Rollback'), ('reconcile', 'Reconcile')], default='push', max_length=10)),
                        ('created', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('actor_name', models.CharField(blank=True, help_text="Who made the changes, or 'system'.", max_length=250)),
                        ('reason', models.CharField(blank=True, max_length=500)),
                        ('changes', models.JSONField(blank=True, default=list, help_text='The committed changes that led to it.')),
                        ('diff', models.JSONField(blank=True, default=dict, help_text='Added, removed and changed entries.')),
                        ('published_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('rollback_of', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='rollbacks', to='rollout.configversion')),
                    ],
                    options={
                        'verbose_name': 'config version',
                        'ordering': ['-version'],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_types_forward, content_types_backward),
    ]
