from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views import View

from meshadmin.forms import ReviewForm
from meshadmin.querysets import CHANGE
from meshadmin.views import generic
from meshadmin.views.workflow import TransitionView
from subscriptions.models import Subscription
from topics.models import Topic

from . import filtersets, forms, tables
from .models import AccessRule, Application, ApplicationKey, RoutingRule
from .notifications import NOTIFIED, notify
from .rules import compiled_access_rules, current_policy, routing_blocker_of, rule_url
from .simulator import capabilities, simulate
from .validation import TITLES, all_findings, findings_for, subscription_findings

# Applications


class ApplicationListView(generic.ObjectListView):
    queryset = Application.objects.select_related("team").annotate(
        subscription_count=Count("subscriptions", filter=Q(subscriptions__state__in=Subscription.LIVE_STATES),
                                 distinct=True),
        key_count=Count("keys", filter=Q(keys__revoked__isnull=True), distinct=True),
    )
    filterset = filtersets.ApplicationFilterSet
    columns = tables.APPLICATION_COLUMNS
    default_ordering = "name"


class ApplicationView(generic.ObjectDetailView):
    """Its subscriptions, keys (for its team), the compiled rules that apply to it and what it may do."""

    queryset = Application.objects.select_related("team")
    template_name = "governance/application.html"

    def extra_context(self, request, obj) -> dict:
        policy = current_policy()
        subscriptions = Subscription.objects.restrict(request.user).filter(application=obj)
        applying = [rule for rule in policy.rules if rule["principals"] == "*" or obj.name in rule["principals"]]
        return {
            "subscriptions": subscriptions.select_related("topic").order_by("topic__name", "-created"),
            "keys": ApplicationKey.objects.restrict(request.user).filter(application=obj).order_by("-created"),
            # Keys are the team's business: others do not even learn how many there are.
            "may_see_keys": request.user.is_staff or obj.team.memberships.filter(user=request.user).exists(),
            "rules": [{**rule, "url": rule_url(rule["id"])} for rule in applying],
            "capabilities": capabilities(obj.name, policy),
            "findings": subscription_findings(subscriptions, policy),
        }


class ApplicationEditView(generic.ObjectEditView):
    queryset = Application.objects.all()
    form_class = forms.ApplicationForm


class ApplicationDeleteView(generic.ObjectDeleteView):
    queryset = Application.objects.all()


# Keys: the plain key is shown once, on the page that answers the creation.


class ApplicationKeyListView(generic.ObjectListView):
    queryset = ApplicationKey.objects.select_related("application")
    filterset = filtersets.ApplicationKeyFilterSet
    columns = tables.APPLICATIONKEY_COLUMNS
    default_ordering = "-created"

    def can_add(self, request) -> bool:
        return Application.can_create(request.user)


class ApplicationKeyView(generic.ObjectDetailView):
    queryset = ApplicationKey.objects.select_related("application", "created_by")
    template_name = "governance/applicationkey.html"


class ApplicationKeyEditView(generic.ObjectEditView):
    """Create a key (answered with the key, once, never cached) or change its description and expiry."""

    queryset = ApplicationKey.objects.select_related("application")
    form_class = forms.ApplicationKeyForm

    def get_instance(self, request, pk):
        if pk is not None:
            return self.get_object(request, pk)
        if not Application.can_create(request.user):
            raise PermissionDenied("You may not create application keys.")
        return ApplicationKey(created_by=request.user)

    def save(self, request, form, created):
        if created:
            self.plain_key = form.instance.generate()
        return super().save(request, form, created)

    def saved(self, request, obj, created):
        if not created:
            return super().saved(request, obj, created)
        response = render(request, "governance/applicationkey_created.html", {"object": obj, "key": self.plain_key})
        add_never_cache_headers(response)
        return response


class ApplicationKeyDeleteView(generic.ObjectDeleteView):
    queryset = ApplicationKey.objects.all()


class ApplicationKeyRevokeView(View):
    def post(self, request, pk):
        key = get_object_or_404(ApplicationKey.objects.restrict(request.user, CHANGE).select_related("application"),
                                pk=pk)
        if key.revoked is not None:
            messages.info(request, f"Key {key.prefix}… was already revoked.")
        else:
            key.revoke()
            messages.success(request, f"Revoked key {key.prefix}…: runtimes refuse it from their next configuration.")
        return redirect(generic.safe_return_url(request, key.application.get_absolute_url()))


# Access rules


class AccessRuleListView(generic.ObjectListView):
    queryset = AccessRule.objects.select_related("team", "principal_application", "principal_team")
    filterset = filtersets.AccessRuleFilterSet
    columns = tables.ACCESSRULE_COLUMNS
    default_ordering = "topic_pattern"


class AccessRuleView(generic.ObjectDetailView):
    queryset = AccessRule.objects.select_related("team", "principal_application", "principal_team")
    template_name = "governance/accessrule.html"

    def extra_context(self, request, obj) -> dict:
        compiled = compiled_access_rules(AccessRule.objects.filter(pk=obj.pk), Subscription.objects.none())
        covered = Topic.objects.order_by("name")
        if obj.topic_pattern.endswith(".*"):
            covered = covered.filter(name__startswith=obj.topic_pattern[:-1])
        elif obj.topic_pattern != "*":
            covered = covered.filter(name=obj.topic_pattern)
        return {"compiled": compiled[0] if compiled else None, "covered": covered[:50],
                "covered_count": covered.count()}


class AccessRuleEditView(generic.ObjectEditView):
    queryset = AccessRule.objects.all()
    form_class = forms.AccessRuleForm


class AccessRuleDeleteView(generic.ObjectDeleteView):
    queryset = AccessRule.objects.all()


# Routing rules


class RoutingRuleListView(generic.ObjectListView):
    queryset = RoutingRule.objects.select_related("team").prefetch_related("targets")
    filterset = filtersets.RoutingRuleFilterSet
    columns = tables.ROUTINGRULE_COLUMNS
    default_ordering = "order"


class RoutingRuleView(generic.ObjectDetailView):
    queryset = RoutingRule.objects.select_related("team", "source_team", "requested_by", "reviewed_by") \
        .prefetch_related("targets")
    template_name = "governance/routingrule.html"

    def extra_context(self, request, obj) -> dict:
        steps = obj.available_transitions(request.user)
        return {
            "findings": findings_for(obj),
            "steps": [step for step in steps if step not in ("approve", "reject")],
            "may_review": "approve" in steps,
            "review_form": ReviewForm(),
            "blocker": routing_blocker_of(obj),
        }


class RoutingRuleEditView(generic.ObjectEditView):
    """Create or change a rule; one that now reads another team's topics is requested from that
    team, who is told by e-mail."""

    queryset = RoutingRule.objects.all()
    form_class = forms.RoutingRuleForm

    #: Whether the save asked the source team (RoutingRuleForm.review_requested).
    review_requested = False
    #: Where a target's schema refuses what a source admits (RoutingRuleForm.schema_warnings).
    schema_warnings: list[str] = []

    def save(self, request, form, created):
        rule = super().save(request, form, created)
        if form.review_requested:
            notify(rule, "requested", request)
        self.review_requested = form.review_requested
        self.schema_warnings = form.schema_warnings
        return rule

    def saved(self, request, obj, created):
        for warning in self.schema_warnings[:5]:  # saved all the same: the producer's events are stored
            messages.warning(request, f"Saved {obj.rule_id}, but {warning}")
        if not self.review_requested:
            return super().saved(request, obj, created)
        messages.info(request, f"Saved {obj.rule_id}: it reads topics of {obj.source_team}, so it routes "
                               f"nothing until {obj.source_team} approves it. They are told.")
        return redirect(obj.get_absolute_url())


class RoutingRuleDeleteView(generic.ObjectDeleteView):
    queryset = RoutingRule.objects.all()


class RoutingRuleTransitionView(TransitionView):
    """POST approve, reject, revoke or request (meshadmin.views.workflow)."""

    queryset = RoutingRule.objects.select_related("team", "source_team")
    detail_view = RoutingRuleView
    row_template = "governance/routingrule_inbox_row.html"
    row_name = "rule"
    notified = NOTIFIED

    def notify(self, request, obj, event):
        notify(obj, event, request)

    def label(self, obj) -> str:
        return obj.rule_id


# Simulator and validation


def simulator(request):
    """Application + topic + action: allowed or denied, the deciding rule and every rule that matched."""
    form = forms.SimulatorForm(request.GET or None)
    result = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        result = simulate(data["application"].name, data["topic"], data["action"])
    context = {
        "form": form, "result": result,
        "in_catalog": result is not None and Topic.objects.filter(name=result.topic).exists(),
        "topic_names": Topic.objects.order_by("name").values_list("name", flat=True),
    }
    return render(request, "governance/simulator.html", context, status=400 if form.errors else 200)


def validation(request):
    """Every validation warning about what the user may see, grouped by kind."""
    groups: dict[str, list] = {code: [] for code in TITLES}
    for finding in all_findings(request.user):
        groups[finding.code].append(finding)
    context = {"groups": [(code, TITLES[code], items) for code, items in groups.items()],
               "total": sum(len(items) for items in groups.values()), "today": timezone.localdate()}
    return render(request, "governance/validation.html", context)
