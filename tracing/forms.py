"""Forms of the event pages: the test event, and the event browser's search."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from governance.forms import FiltersField
from meshadmin.forms import BootstrapMixin
from meshruntime.cloudevents import CORE_ATTRIBUTES
from topics.models import Topic

from .test_events import BadEvent, TestEvent, check_data, check_extensions, sender_applications


class JSONText(forms.JSONField):
    """JSON typed into a textarea; a syntax error is reported with its line and column."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValidationError(f"Not JSON: {error.msg} at line {error.lineno}, column {error.colno}.") from None

    def bound_data(self, data, initial):
        return data  # show what was typed, even when it does not parse

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


class JSONDataText(JSONText):
    """An event's JSON data typed into a textarea, cleaned to the text as typed once
    :func:`~tracing.test_events.check_data` accepts it: the event carries that text, not the text
    parsed and written again (which would round the numbers a double cannot hold)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            check_data(value)
        except BadEvent as error:
            raise ValidationError(str(error)) from None
        return value


class TestEventForm(BootstrapMixin, forms.Form):
    __test__ = False  # not a pytest class, whatever its name

    application = forms.ModelChoiceField(queryset=None, help_text="Sent as this application: its access "
                                                                  "rules decide, as on a runtime.")
    type = forms.CharField(max_length=500)
    source = forms.CharField(max_length=500, help_text="A URI reference, like /portal/test.")
    subject = forms.CharField(max_length=500, required=False)
    extensions = JSONText(required=False, help_text="A JSON object of extension attributes (lowercase names, "
                                                    "string, integer or boolean values).",
                          widget=forms.Textarea(attrs={"rows": 3, "class": "form-control font-monospace"}))
    data = JSONDataText(required=False, help_text="JSON, sent as typed; checked against the topic's schema as you "
                                                  "type, and by the runtime's own check when sent. Empty: no data.",
                        widget=forms.Textarea(attrs={"rows": 10, "class": "form-control font-monospace"}))

    def __init__(self, *args, user, topic: Topic, **kwargs):
        kwargs.setdefault("initial", self.initial_from(topic))
        super().__init__(*args, **kwargs)
        self.fields["application"].queryset = sender_applications(user)
        self._style()

    @staticmethod
    def initial_from(topic: Topic) -> dict[str, Any]:
        """The topic's example event, if it has one, as the form's starting point."""
        example = topic.example_event if isinstance(topic.example_event, dict) else {}
        return {
            "type": example.get("type", f"{topic.name}.test"),
            "source": example.get("source", "/meshadmin/test-events"),
            "subject": example.get("subject", ""),
            "extensions": {k: v for k, v in example.items()
                           if k not in CORE_ATTRIBUTES and k not in ("data", "data_base64")},
            "data": example.get("data"),
        }

    def clean_extensions(self):
        extensions = self.cleaned_data.get("extensions")
        try:
            return check_extensions({} if extensions is None else extensions)
        except BadEvent as error:
            raise ValidationError(str(error)) from None

    def test_event(self) -> TestEvent:
        c = self.cleaned_data
        return TestEvent(application=c["application"], type=c["type"], source=c["source"], subject=c["subject"],
                         extensions=c["extensions"], data=c["data"])


class EventSearchForm(forms.Form):
    """The event browser's query: where to look (a position, a time, an event id) and what to match."""

    q = forms.CharField(required=False, max_length=200, label="Text",
                        help_text="Matches id, type, source and subject (any case).")
    filters = FiltersField(label="Filters", widget=forms.Textarea(attrs={"rows": 2, "class": "form-control "
                                                                         "form-control-sm font-monospace"}))
    at = forms.DateTimeField(required=False, label="Around (UTC)", input_formats=["%Y-%m-%dT%H:%M",
                                                                                    "%Y-%m-%dT%H:%M:%S",
                                                                                    "%Y-%m-%d %H:%M",
                                                                                    "%Y-%m-%d %H:%M:%S"],
                             widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}))
    id = forms.CharField(required=False, max_length=1024, label="Event id")
    before = forms.RegexField(r"^\d{1,20}-\d{1,20}$", required=False, widget=forms.HiddenInput,
                              error_messages={"invalid": "A position is <milliseconds>-<sequence>."})
    after = forms.RegexField(r"^\d{1,20}-\d{1,20}$", required=False, widget=forms.HiddenInput,
                             error_messages={"invalid": "A position is <milliseconds>-<sequence>."})

    def clean_at(self):
        at = self.cleaned_data.get("at")
        if at is None:
            return None
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)

    def clean(self):
        cleaned = super().clean()
        for name in ("before", "after", "id"):
            cleaned[name] = cleaned.get(name) or None  # empty: not given
        places = [name for name in ("at", "id", "before", "after") if cleaned.get(name)]
        if len(places) > 1:
            raise ValidationError(f"Give one place to look at a time, not {' and '.join(places)}.")
        return cleaned

    @property
    def filtered(self) -> bool:
        return bool(self.cleaned_data.get("q") or self.cleaned_data.get("filters"))

    @staticmethod
    def at_ms(at: datetime) -> int:
        return int(at.timestamp() * 1000)


class TraceSearchForm(forms.Form):
    """The "Traces" tab's search: a time range, a duration range, errors only or none (SkyWalking)."""

    range = forms.ChoiceField(choices=[(key, key) for key in ("15m", "1h", "6h", "24h", "7d")], required=False)
    state = forms.ChoiceField(choices=[("ALL", "all"), ("ERROR", "errors"), ("SUCCESS", "without errors")],
                              required=False)
    min_ms = forms.IntegerField(min_value=0, max_value=86_400_000, required=False, label="At least (ms)")
    max_ms = forms.IntegerField(min_value=0, max_value=86_400_000, required=False, label="At most (ms)")
    page = forms.IntegerField(min_value=1, max_value=500, required=False)
    trace = forms.RegexField(regex=r"^[\w.\-:]{1,200}$", required=False, error_messages={
        "invalid": "A trace id is 1 to 200 letters, digits and . - _ :"})

    def clean(self):
        data = super().clean()
        low, high = data.get("min_ms"), data.get("max_ms")
        if low is not None and high is not None and low > high:
            self.add_error("max_ms", f"At most ({high} ms) is below at least ({low} ms).")
        data["range"] = data.get("range") or "1h"
        data["state"] = data.get("state") or "ALL"
        data["page"] = data.get("page") or 1
        return data
