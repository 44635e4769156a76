"""One generic set of list, detail, edit, delete and history views (NetBox's views/generic).

A concrete view names its queryset and, where it has them, its filterset, columns and form.
Every object comes from ``restrict(user, action)``, so what a user may not see or change is 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, path, reverse
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from meshadmin.deletion import InUseError, in_use
from meshadmin.models import AuditEntry
from meshadmin.querysets import CHANGE, DELETE, VIEW, may_create
from meshadmin.tabs import actions_for, tabs_for

PER_PAGE_CHOICES = (25, 50, 100, 250)
DEFAULT_PER_PAGE = 50


def model_meta(queryset):
    return queryset.model._meta


def url_name(queryset, suffix: str = "") -> str:
    meta = model_meta(queryset)
    return f"{meta.app_label}:{meta.model_name}{suffix}"


def safe_return_url(request, default: str) -> str:
    candidate = request.POST.get("return_url") or request.GET.get("return_url")
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}):
        return candidate
    return default


def reverse_or_none(name: str) -> str | None:
    """The URL of a page without arguments, or None when there is no such page (a model whose
    rows are never made by hand, like the audit log's, has no add page)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def object_url(obj, suffix: str) -> str | None:
    """The URL of one of the object's pages, or None when its model has no such page."""
    try:
        return reverse(f"{obj._meta.app_label}:{obj._meta.model_name}{suffix}", args=[obj.pk])
    except NoReverseMatch:
        return None


def object_attrs(obj) -> list[tuple[str, object]]:
    """(label, value) of the object's concrete fields, for pages without a template of their own."""
    attrs = []
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        value = getattr(obj, f"get_{field.name}_display", None)
        attrs.append((field.verbose_name.capitalize(), value() if value else getattr(obj, field.name)))
    return attrs


class BaseObjectView(View):
    queryset = None
    action = VIEW

    def get_queryset(self, request):
        return self.queryset.restrict(request.user, self.action)

    def get_object(self, request, pk):
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def base_context(self, request) -> dict:
        meta = model_meta(self.queryset)
        return {
            "model_meta": meta,
            "verbose_name": meta.verbose_name,
            "verbose_name_plural": meta.verbose_name_plural,
            "list_url": reverse(url_name(self.queryset, "_list")),
        }


class ObjectListView(BaseObjectView):
    """Search, filters (the API's FilterSet), sorting, pagination, counts and bulk delete."""

    filterset = None
    columns: list = []
    template_name = "generic/object_list.html"
    results_template = "generic/object_list_results.html"
    default_ordering: str | None = None
    bulk_delete = True

    def can_add(self, request) -> bool:
        return may_create(self.queryset.model, request.user)

    def get(self, request):
        queryset = self.get_queryset(request)
        filterset = None
        if self.filterset is not None:
            filterset = self.filterset(request.GET, queryset=queryset, request=request)
            queryset = filterset.qs if filterset.is_valid() else queryset.none()

        sort = request.GET.get("sort", "")
        sortable = {c.sort_key for c in self.columns if c.sort_key}
        if sort.lstrip("-") in sortable:
            column = next(c for c in self.columns if c.sort_key == sort.lstrip("-"))
            queryset = queryset.order_by(f"{'-' if sort.startswith('-') else ''}{column.sort_key}", "pk")
        elif self.default_ordering:
            queryset = queryset.order_by(self.default_ordering, "pk")

        try:
            per_page = int(request.GET.get("per_page", DEFAULT_PER_PAGE))
        except ValueError:
            per_page = DEFAULT_PER_PAGE
        per_page = min(max(per_page, 1), max(PER_PAGE_CHOICES))
        page = Paginator(queryset, per_page).get_page(request.GET.get("page"))
        rows = [(obj, [column.render(obj) for column in self.columns]) for obj in page.object_list]
        # Rows the user may delete get a checkbox; with none, no bulk delete is offered at all.
        deletable = set(self.queryset.restrict(request.user, DELETE).filter(pk__in=[obj.pk for obj, _ in rows])
                        .values_list("pk", flat=True)) if self.bulk_delete and rows else set()

        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self.base_context(request),
            "filterset": filterset,
            "filter_errors": filterset.errors if filterset is not None and not filterset.is_valid() else None,
            "columns": self.columns,
            "rows": rows,
            "page": page,
            "sort": sort,
            "querystring": query.urlencode(),
            "per_page": per_page,
            "per_page_choices": PER_PAGE_CHOICES,
            "add_url": reverse_or_none(url_name(self.queryset, "_add")) if self.can_add(request) else None,
            "bulk_delete_url": reverse_or_none(url_name(self.queryset, "_bulk_delete")) if deletable else None,
            "deletable": deletable,
        }
        template = self.results_template if request.htmx and not request.htmx.boosted else self.template_name
        return render(request, template, context)


class ObjectDetailView(BaseObjectView):
    template_name: str = "generic/object.html"
    tab = "overview"

    def extra_context(self, request, obj) -> dict:
        return {}

    def get(self, request, pk):
        obj = self.get_object(request, pk)
        can_change = self.queryset.restrict(request.user, CHANGE).filter(pk=obj.pk).exists()
        context = {
            **self.base_context(request),
            "object": obj,
            "tab": self.tab,
            "can_change": can_change,
            "edit_url": object_url(obj, "_edit") if can_change else None,
            "delete_url": object_url(obj, "_delete") if can_change else None,
            "history_url": object_url(obj, "_history"),
            "object_tabs": tabs_for(obj, request.user),
            "object_actions": actions_for(obj, request.user),
            "object_attrs": object_attrs(obj),
            **self.extra_context(request, obj),
        }
        return render(request, self.template_name, context)


class SearchTabMixin:
    """For a tab of an object's page that searches: a search whose form does not validate answers
    400 (the page still shows, with the form's errors), so that a client tells a bad search from
    an empty result. The view's ``extra_context`` sets ``bad_search`` when its form is invalid.
    Put it before ``ObjectDetailView`` among the bases."""

    bad_search = False

    def get(self, request, pk):
        response = super().get(request, pk)
        if self.bad_search:
            response.status_code = 400
        return response


class ObjectHistoryView(ObjectDetailView):
    """The History tab: the object's audit entries that the user may see."""

    template_name = "generic/object_history.html"
    tab = "history"

    def extra_context(self, request, obj) -> dict:
        entries = (
            AuditEntry.objects.restrict(request.user)
            .filter(object_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk))
            .select_related("object_type")
        )
        return {"entries": Paginator(entries, 50).get_page(request.GET.get("page"))}


class ObjectEditView(BaseObjectView):
    """Create (no pk) or update (pk) through the model's form; the form sees the user.

    A model with more to do around the save overrides :meth:`save` (runs in the transaction:
    give a new key its material, notify the other team on commit) or :meth:`saved` (the answer),
    not ``post``.
    """

    form_class = None
    template_name = "generic/object_edit.html"
    action = CHANGE

    def get_instance(self, request, pk):
        if pk is None:
            model = self.queryset.model
            if not may_create(model, request.user):
                raise PermissionDenied(f"You may not create {model._meta.verbose_name_plural}.")
            return model()
        return self.get_object(request, pk)

    def get_initial(self, request) -> dict:
        return request.GET.dict()

    def render_form(self, request, form, obj):
        context = {**self.base_context(request), "form": form, "object": obj,
                   "return_url": safe_return_url(request, obj.get_absolute_url() if obj.pk else
                                                 reverse(url_name(self.queryset, "_list")))}
        return render(request, self.template_name, context, status=400 if form.is_bound else 200)

    def get(self, request, pk=None):
        obj = self.get_instance(request, pk)
        form = self.form_class(instance=obj, user=request.user,
                               initial=self.get_initial(request) if pk is None else None)
        return self.render_form(request, form, obj)

    def post(self, request, pk=None):
        obj = self.get_instance(request, pk)
        form = self.form_class(request.POST, instance=obj, user=request.user)
        if not form.is_valid():
            return self.render_form(request, form, obj)
        created = obj.pk is None
        with transaction.atomic():
            obj = self.save(request, form, created)
        return self.saved(request, obj, created)

    def save(self, request, form, created: bool):
        """Save the valid ``form`` inside the request's transaction; return the object."""
        return form.save()

    def saved(self, request, obj, created: bool) -> HttpResponse:
        """The answer once ``obj`` is saved and committed."""
        messages.success(request, f"{'Created' if created else 'Saved'} {obj._meta.verbose_name} {obj}.")
        return redirect(obj.get_absolute_url())


class ObjectDeleteView(BaseObjectView):
    template_name = "generic/object_delete.html"
    action = DELETE

    def get(self, request, pk):
        obj = self.get_object(request, pk)
        return render(request, self.template_name, {**self.base_context(request), "object": obj})

    def post(self, request, pk):
        obj = self.get_object(request, pk)
        name = str(obj)
        try:
            with transaction.atomic():
                obj.delete()
        except InUseError as error:
            # 409 and the page again, naming what still uses the object (meshadmin.deletion).
            messages.error(request, in_use(error, obj, request.user).message)
            return render(request, self.template_name, {**self.base_context(request), "object": obj}, status=409)
        messages.success(request, f"Deleted {obj._meta.verbose_name} {name}.")
        return HttpResponseRedirect(reverse(url_name(self.queryset, "_list")))


class BulkDeleteView(BaseObjectView):
    """Deletes the selected rows that the user may delete; the others are not even looked up."""

    template_name = "generic/bulk_delete.html"
    action = DELETE

    @cached_property
    def _list_url(self):
        return reverse(url_name(self.queryset, "_list"))

    def post(self, request):
        pks = [pk for pk in request.POST.getlist("pk") if pk.isdigit()]
        objects = self.get_queryset(request).filter(pk__in=pks)
        if "confirm" not in request.POST:
            if not pks:
                messages.warning(request, "Select at least one row to delete.")
                return redirect(self._list_url)
            return render(request, self.template_name, {**self.base_context(request), "objects": objects,
                                                        "requested": len(pks)})
        deleted, blocked = 0, []
        with transaction.atomic():
            for obj in objects:  # one by one, so the audit log sees each deletion
                try:
                    with transaction.atomic():
                        obj.delete()
                except InUseError as error:
                    blocked.append(in_use(error, obj, request.user).message)
                    continue
                deleted += 1
            if blocked:
                # All or nothing: the operator sees what blocks, and deletes or deselects it.
                transaction.set_rollback(True)
        if blocked:
            messages.error(request, f"Nothing was deleted: {len(blocked)} of the selected "
                                    f"{model_meta(self.queryset).verbose_name_plural} are still in use.")
            for message in blocked:
                messages.error(request, message)
            objects = self.get_queryset(request).filter(pk__in=pks)
            return render(request, self.template_name, {**self.base_context(request), "objects": objects,
                                                        "requested": len(pks)}, status=409)
        messages.success(request, f"Deleted {deleted} {model_meta(self.queryset).verbose_name_plural}.")
        return redirect(safe_return_url(request, self._list_url))

    def get(self, request):
        raise Http404("Bulk delete takes a POST.")


def model_urls(name: str, *, list_view, detail_view, edit_view, delete_view,
               bulk_delete_view=None, history_view=None) -> list:
    """The URL patterns of one model's pages: two lines in an app's urls.py."""
    queryset = detail_view.queryset
    bulk_delete_view = bulk_delete_view or type(f"{name}BulkDelete", (BulkDeleteView,), {"queryset": queryset})
    history_view = history_view or type(f"{name}History", (ObjectHistoryView,), {"queryset": queryset})
    return [
        path(f"{name}s/", list_view.as_view(), name=f"{name}_list"),
        path(f"{name}s/add/", edit_view.as_view(), name=f"{name}_add"),
        path(f"{name}s/delete/", bulk_delete_view.as_view(), name=f"{name}_bulk_delete"),
        path(f"{name}s/<int:pk>/", detail_view.as_view(), name=name),
        path(f"{name}s/<int:pk>/edit/", edit_view.as_view(), name=f"{name}_edit"),
        path(f"{name}s/<int:pk>/delete/", delete_view.as_view(), name=f"{name}_delete"),
        path(f"{name}s/<int:pk>/history/", history_view.as_view(), name=f"{name}_history"),
    ]
