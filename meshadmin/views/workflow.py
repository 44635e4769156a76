"""The one view behind every review button (meshadmin.workflow): approve, reject, revoke, …

The model decides who may take a step and when; a refusal answers 403 or 409 (400 for a missing
comment) with its reason. From the inbox (htmx) the answer is the inbox row, with 200 so that the
reason shows in place.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from meshadmin.views.generic import safe_return_url
from meshadmin.workflow import TransitionRefused


class TransitionView(View):
    queryset = None  # restricted to what the user may see
    detail_view = None  # renders the object's page again, with the refusal
    row_template = ""  # the inbox row
    row_name = "obj"  # the row template's name for the object
    #: step -> the event that notifies the other side of it
    notified: dict[str, str] = {}

    def notify(self, request, obj, event: str) -> None:
        raise NotImplementedError

    def take(self, request, obj, step: str) -> None:
        obj.transition(step, by=request.user, comment=request.POST.get("comment", ""))

    def post(self, request, pk, step):
        model = self.queryset.model
        if step not in model.TRANSITIONS:
            raise Http404("No such step.")
        obj = get_object_or_404(self.queryset.restrict(request.user), pk=pk)
        error, status = None, 200
        try:
            with transaction.atomic():
                self.take(request, obj, step)
                if step in self.notified:
                    self.notify(request, obj, self.notified[step])
        except TransitionRefused as exc:
            error, status = str(exc), exc.status
        except ValidationError as exc:
            error, status = " ".join(exc.messages), 400
        done = model.TRANSITIONS[step].done
        if request.htmx:
            return render(request, self.row_template,
                          {self.row_name: obj, "error": error, "done": None if error else done, "oob": True})
        if error:
            messages.error(request, error)
            return self.refused(request, obj, status)
        messages.success(request, f"{model._meta.verbose_name.capitalize()} {self.label(obj)} {done}.")
        return redirect(safe_return_url(request, obj.get_absolute_url()))

    def refused(self, request, obj, status: int):
        """The object's page again, with the refusal among its messages."""
        view = self.detail_view()
        view.setup(request, pk=obj.pk)
        response = view.get(request, obj.pk)
        response.status_code = status
        return response

    def label(self, obj) -> str:
        return str(obj)
