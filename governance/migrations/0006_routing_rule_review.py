"""Routing rules are reviewed like subscriptions: a rule whose source covers another team's
topics is "requested" until that team approves it. Existing rules that read another team's
topics become requested now (they were copying that team's events without its approval); the
others are approved, as they need nobody's.
"""

from bisect import bisect_left

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _covered_teams(pattern: str, names: list[str], teams: list[int]) -> set[int]:
    """The owners of the topics ``pattern`` covers (meshruntime.policy.pattern_matches, as of
    this migration), from topic names in order and their teams."""
    if pattern == "*":
        return set(teams)
    if not pattern.endswith(".*"):
        index = bisect_left(names, pattern)
        return {teams[index]} if index < len(names) and names[index] == pattern else set()
    prefix, found = pattern[:-1], set()
    index = bisect_left(names, prefix)
    while index < len(names) and names[index].startswith(prefix):
        found.add(teams[index])
        index += 1
    return found


def request_cross_team_rules(apps, schema_editor):
    RoutingRule = apps.get_model("governance", "RoutingRule")
    Topic = apps.get_model("topics", "Topic")
    Team = apps.get_model("meshadmin", "Team")
    pairs = sorted(Topic.objects.values_list("name", "team_id"))
    names, teams = [name for name, _ in pairs], [team for _, team in pairs]
    AuditEntry = apps.get_model("meshadmin", "AuditEntry")
    ContentType = apps.get_model("contenttypes", "ContentType")
    team_names = dict(Team.objects.values_list("pk", "name"))
    rule_type = None
    for pk, team_id, pattern in RoutingRule.objects.values_list("pk", "team_id", "source_pattern"):
        foreign = sorted(_covered_teams(pattern, names, teams) - {team_id}, key=team_names.__getitem__)
        if not foreign:
            continue
        # Several other teams: the first one is asked; the rule stays out of the configuration
        # while it covers the others' topics too (governance.rules.route_blocker).
        RoutingRule.objects.filter(pk=pk).update(state="requested", source_team_id=foreign[0])
        if rule_type is None:
            rule_type, _ = ContentType.objects.get_or_create(app_label="governance", model="routingrule")
        AuditEntry.objects.create(
            actor_name="system", action="update", object_type=rule_type, object_id=str(pk),
            object_repr=f"route-{pk}: {pattern}"[:250], team_id=team_id,
            before={"state": "approved", "source_team": None},
            after={"state": "requested", "source_team": foreign[0],
                   "reason": "reads another team's topics without its approval (migration 0006)"})


class Migration(migrations.Migration):

    dependencies = [
        ('governance', '0005_move_rollout_models'),
        ('meshadmin', '0002_audit_team_without_constraint'),
        ('topics', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='routingrule',
            name='requested_by',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='routingrule',
            name='reviewed_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='routingrule',
            name='reviewed_by',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='routingrule',
            name='reviewer_comment',
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name='routingrule',
            name='source_team',
            field=models.ForeignKey(blank=True, editable=False, help_text='The other team whose topics the source covers; it approves the rule.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='meshadmin.team'),
        ),
        migrations.AddField(
            model_name='routingrule',
            name='state',
            field=models.CharField(choices=[('requested', 'Requested'), ('approved', 'Approved'), ('rejected', 'Rejected'), ('revoked', 'Revoked')], db_index=True, default='approved', editable=False, max_length=10),
        ),
        migrations.RunPython(request_cross_team_rules, migrations.RunPython.noop),
    ]
