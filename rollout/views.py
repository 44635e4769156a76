"""Pages of the rollout: runtimes (live), config versions with their diffs, push now, rollback.

Every signed-in user sees runtimes and versions; push now and rollback are staff-only, enforced
by ``ConfigVersion.objects.restrict(user, CHANGE)`` (empty for others, so a rollback answers
404) and ``ConfigVersion.can_push`` (push now answers 403).
"""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from meshadmin.querysets import CHANGE
from meshadmin.tabs import tabs_for
from topics import engines
from topics.models import EventStore, Topic

from . import push, restore
from .diff import SECTIONS
from .disclosure import DOCUMENTS_FOR_STAFF, may_read_documents, redact
from .models import ConfigVersion, Runtime


def _rows(runtimes, latest):
    now = timezone.now()
    version = latest.version if latest else None
    return [(runtime, runtime.state_at(now), runtime.sync_with(version)) for runtime in runtimes]


def runtime_list(request):
    """Every runtime with its health and convergence; updated live over ``/ws/runtimes/``."""
    latest = push.latest_version()
    runtimes = Runtime.objects.restrict(request.user)
    if request.GET.get("application"):
        runtimes = runtimes.filter(application=request.GET["application"])
    rows = _rows(runtimes, latest)
    context = {
        "rows": rows,
        "latest": latest,
        "states": Counter(state for _, state, _ in rows),
        "syncs": Counter(sync for _, state, sync in rows if state != Runtime.GONE),
    }
    return render(request, "rollout/runtime_list.html", context)


def runtime_detail(request, pk):
    """The runtime, and the drift: what changed in the database since the version it runs."""
    runtime = get_object_or_404(Runtime.objects.restrict(request.user), pk=pk)
    latest = push.latest_version()
    return render(request, "rollout/runtime.html", {
        "drift": restore.drift_since(runtime.config_version),
        "object": runtime, "latest": latest, "state": runtime.state,
        "sync": runtime.sync_with(latest.version if latest else None),
        "counters": sorted(runtime.counters.items()) if isinstance(runtime.counters, dict) else [],
        "object_tabs": tabs_for(runtime, request.user),  # other apps' tabs (tracing's charts)
        "stores": sorted(runtime.stores.items()) if isinstance(runtime.stores, dict) else [],
    })


STORE_TOPICS_SHOWN = 50  # per store on the stores page: each is a few round trips to its engine


def store_status(request):
    """Every event store: its kind and connection, what the live runtimes report of it, and per
    topic what its engine reports (events held, oldest, backlog), asked by the portal itself."""
    now = timezone.now()
    live = [r for r in Runtime.objects.restrict(request.user) if r.state_at(now) != Runtime.GONE]
    stores = []
    for store in EventStore.objects.restrict(request.user).order_by("name"):
        reports: dict[str, list[Runtime]] = {}
        for runtime in live:
            entry = runtime.stores.get(store.name) if isinstance(runtime.stores, dict) else None
            if isinstance(entry, dict):
                reports.setdefault(str(entry.get("state", "unknown")), []).append(runtime)
        topics = list(Topic.objects.restrict(request.user).filter(store=store).order_by("name")
                      .prefetch_related("subscriptions")[:STORE_TOPICS_SHOWN])
        figures, error = {}, None
        if topics:
            try:
                figures = engines.topic_figures(store, {t.name: [s.subscription_id for s in t.subscriptions.all()]
                                                        for t in topics})
            except (engines.EngineUnavailable, ValueError) as problem:
                error = str(problem)
        stores.append({
            "store": store, "reports": sorted(reports.items()), "reached_by": engines.describe(store),
            "topic_count": store.topics.count(), "error": error,
            "topics": [(topic, figures.get(topic.name)) for topic in topics],
        })
    return render(request, "rollout/store_status.html", {"stores": stores, "shown": STORE_TOPICS_SHOWN})


def configversion_list(request):
    versions = ConfigVersion.objects.restrict(request.user).defer("document", "changes")
    page = Paginator(versions, 50).get_page(request.GET.get("page"))
    return render(request, "rollout/configversion_list.html", {
        "page": page,
        "latest": push.latest_version(),
        "status": push.last_status(),
        "can_push": ConfigVersion.can_push(request.user),
        "runtime_count": Runtime.objects.restrict(request.user).count(),
    })


def _diff_sections(diff: dict) -> list[dict]:
    return [{"label": label, **diff[section]} for section, _identity, label in SECTIONS if section in diff]


def configversion_detail(request, pk):
    """The version, its diff against the one before, what led to it, and the runtimes
    converging to it (live)."""
    version = get_object_or_404(ConfigVersion.objects.restrict(request.user).defer("document"), pk=pk)
    latest = push.latest_version()
    runtimes = [r for r in Runtime.objects.restrict(request.user) if r.state != Runtime.GONE]
    applied = [r for r in runtimes if r.config_version is not None and r.config_version >= version.version]
    return render(request, "rollout/configversion.html", {
        "object": version,
        "latest": latest,
        "is_latest": latest is not None and latest.pk == version.pk,
        "sections": _diff_sections(redact(version.diff or {})),
        "may_read_document": may_read_documents(request.user),
        "runtimes": runtimes,
        "applied_count": len(applied),
        "can_rollback": ConfigVersion.objects.restrict(request.user, CHANGE).filter(pk=version.pk).exists(),
        "can_push": ConfigVersion.can_push(request.user),
        "keep_documents": settings.MESH_CONFIG_KEEP_DOCUMENTS,
    })


def configversion_document(request, pk):
    """The whole document, for staff (rollout.disclosure), digests and secrets redacted."""
    version = get_object_or_404(ConfigVersion.objects.restrict(request.user).only("pk"), pk=pk)
    if not may_read_documents(request.user):
        return JsonResponse({"detail": DOCUMENTS_FOR_STAFF}, status=403)
    document = ConfigVersion.objects.values_list("document", flat=True).get(pk=version.pk)
    if document is None:
        return JsonResponse({"detail": push.PRUNED}, status=410)
    return JsonResponse(redact(document), json_dumps_params={"indent": 2, "sort_keys": True})


class ConfigPushView(View):
    """Push now (staff): publish the database's state, or announce the latest version again."""

    def post(self, request):
        if not ConfigVersion.can_push(request.user):
            raise PermissionDenied("Only staff push the mesh configuration.")
        try:
            result = push.push(ConfigVersion.MANUAL, force=True, user=request.user, wait=10.0)
        except push.PushBusy:
            messages.warning(request, "Another push is in progress; try again in a moment.")
            return redirect("rollout:configversion_list")
        return _report(request, result)


def configversion_rollback(request, pk):
    """Staff: GET previews restoring the database to this version (rollout.restore), POST with
    the preview's ``confirm`` restores it and publishes it. Others get 404."""
    target = get_object_or_404(ConfigVersion.objects.restrict(request.user, CHANGE).only("pk", "version", "created"),
                               pk=pk)
    status, plan, refused = 200, None, ""
    if request.method == "POST":
        try:
            outcome = restore.rollback(target, request.user, confirm=request.POST.get("confirm", ""))
        except restore.PlanChanged as changed:
            messages.warning(request, str(changed))
            status, plan = 409, changed.plan
        except restore.RestoreRefused as error:
            status, refused = 400, str(error)
        except push.PushBusy:
            messages.warning(request, "Another push is in progress; try again in a moment.")
            return redirect(reverse("rollout:configversion_rollback", args=[target.pk]))
        else:
            messages.success(request, f"Restored the database to version {target.version} "
                                      f"({outcome.plan.summary}).")
            return _report(request, outcome.push)
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    if plan is None and not refused:
        try:
            plan = restore.preview(target, request.user)
        except restore.RestoreRefused as error:
            refused = str(error)
    return render(request, "rollout/configversion_rollback.html", {
        "object": target, "plan": plan, "refused": refused,
        "sections": _diff_sections(plan.remaining) if plan else [],
    }, status=status)


def _report(request, result: push.PushResult):
    if result.outcome == "failed":
        messages.error(request, f"Not published: {result.error}")
        return redirect("rollout:configversion_list")
    text = {"published": "Published version {v}.",
            "republished": "Nothing changed; announced the content again as version {v}.",
            "unchanged": "Nothing changed; version {v} stays."}[result.outcome]
    messages.success(request, text.format(v=result.version))
    version = ConfigVersion.objects.filter(version=result.version).only("pk").first()
    return redirect(version.get_absolute_url() if version else reverse("rollout:configversion_list"))
