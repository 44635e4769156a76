from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.html import format_html
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.defaults import page_not_found

from governance.validation import findings_for
from meshadmin.filtersets import AuditEntryFilterSet, MembershipFilterSet, TeamFilterSet
from meshadmin.forms import APITokenForm, LoginForm, MembershipForm, TeamForm
from meshadmin.models import APIToken, AuditEntry, Membership, Team
from meshadmin.querysets import CHANGE
from meshadmin.tables import Column, audit_action_badge
from topics.models import Topic

from . import generic


def home(request):
    """The dashboard: counts, my teams, recent changes I may see."""
    my_teams = (
        Team.objects.filter(memberships__user=request.user)
        .annotate(topic_count=Count("topics", distinct=True))
        .values("pk", "name", "memberships__role", "topic_count")
    )
    counts = Topic.objects.aggregate(
        total=Count("pk"), deprecated=Count("pk", filter=Q(lifecycle=Topic.DEPRECATED))
    )
    context = {
        "my_teams": my_teams,
        "topic_count": counts["total"],
        "deprecated_count": counts["deprecated"],
        "team_count": Team.objects.count(),
        "recent": AuditEntry.objects.restrict(request.user).select_related("object_type")[:10],
    }
    return render(request, "meshadmin/home.html", context)


@login_not_required
def not_found(request, exception=None):
    """404 for a URL that matches no route: JSON under /api/ (what the API answers for every other
    error), Django's page elsewhere."""
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": "Not found: no API endpoint at this path."}, status=404)
    return page_not_found(request, exception)


@login_not_required
@never_cache
def healthz(request):
    """Liveness and database reachability, for load balancers; no authentication."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


class LoginView(auth_views.LoginView):
    """Django's login page; a try refused by the login gate answers 429 with Retry-After."""

    form_class = LoginForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        wait = form.retry_after()
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response


# Teams and memberships


class TeamListView(generic.ObjectListView):
    queryset = Team.objects.annotate(
        member_count=Count("memberships", distinct=True), topic_count=Count("topics", distinct=True)
    )
    filterset = TeamFilterSet
    columns = [Column("name", linkify=True), Column("slug"), Column("member_count", "Members"),
               Column("topic_count", "Topics")]
    default_ordering = "name"


class TeamView(generic.ObjectDetailView):
    queryset = Team.objects.all()
    template_name = "meshadmin/team.html"

    def extra_context(self, request, obj) -> dict:
        return {
            "memberships": obj.memberships.select_related("user"),
            "topics": obj.topics.select_related("store").order_by("name")[:100],
            "topic_total": obj.topics.count(),
            "can_manage_members": Team.objects.restrict(request.user, CHANGE).filter(pk=obj.pk).exists(),
            "findings": findings_for(obj),
        }


class TeamEditView(generic.ObjectEditView):
    queryset = Team.objects.all()
    form_class = TeamForm


class TeamDeleteView(generic.ObjectDeleteView):
    queryset = Team.objects.all()


class MembershipListView(generic.ObjectListView):
    queryset = Membership.objects.select_related("team", "user")
    filterset = MembershipFilterSet
    columns = [Column("user", order_by="user__username"), Column("team", linkify=True, order_by="team__name"),
               Column("role", badge=True)]
    default_ordering = "team__name"


class MembershipView(generic.ObjectDetailView):
    queryset = Membership.objects.select_related("team", "user")


class MembershipEditView(generic.ObjectEditView):
    queryset = Membership.objects.all()
    form_class = MembershipForm


class MembershipDeleteView(generic.ObjectDeleteView):
    queryset = Membership.objects.all()


# Audit log


class AuditEntryListView(generic.ObjectListView):
    queryset = AuditEntry.objects.select_related("object_type", "team")
    filterset = AuditEntryFilterSet
    columns = [
        Column("time"),
        Column("actor_name", "Actor"),
        Column("action", html=audit_action_badge, order_by="action"),
        Column("object_type", "Type", accessor=lambda e: e.object_type.name, order_by="object_type__model"),
        Column("object_repr", "Object", html=lambda e: format_html('<a href="{}">{}</a>', e.get_absolute_url(),
                                                                     e.object_repr)),
        Column("team", order_by="team__name"),
    ]
    bulk_delete = False


class AuditEntryView(generic.ObjectDetailView):
    queryset = AuditEntry.objects.select_related("object_type", "team", "actor")
    template_name = "meshadmin/auditentry.html"


# API tokens: personal; the key is shown once, right after creation.


class APITokenListView(View):
    def get(self, request):
        tokens = APIToken.objects.restrict(request.user)
        return render(request, "meshadmin/apitoken_list.html",
                      {"tokens": tokens, "form": APITokenForm(user=request.user)})

    def post(self, request):
        form = APITokenForm(request.POST, user=request.user, instance=APIToken(user=request.user))
        if not form.is_valid():
            tokens = APIToken.objects.restrict(request.user)
            return render(request, "meshadmin/apitoken_list.html", {"tokens": tokens, "form": form}, status=400)
        token = form.save(commit=False)
        key = token.generate()
        token.save()
        messages.success(request, "Token created. Copy it now: it is not shown again.")
        return render(request, "meshadmin/apitoken_created.html", {"token": token, "key": key})


class APITokenDeleteView(View):
    def post(self, request, pk):
        token = get_object_or_404(APIToken.objects.restrict(request.user), pk=pk)
        token.delete()
        messages.success(request, f"Token {token.prefix}… revoked.")
        return redirect("meshadmin:apitoken_list")
