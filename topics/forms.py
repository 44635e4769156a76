from __future__ import annotations

import re

from django import forms

from meshadmin.forms import MeshModelForm

from .engines import check_store_move
from .models import EventStore, Tag, Topic

_TAG = re.compile(r"^[-a-zA-Z0-9_]+$")


class TagsField(forms.CharField):
    """Tags typed as a comma-separated list; unknown tags are created on save."""

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(getattr(tag, "name", tag)) for tag in value)
        return value

    def clean(self, value):
        value = super().clean(value)
        names = sorted({name.strip().lower() for name in (value or "").split(",") if name.strip()})
        for name in names:
            if not _TAG.match(name) or len(name) > 50:
                raise forms.ValidationError(f'"{name}" is not a tag: use letters, digits, "-" and "_" (50 at most).')
        return names


class TopicForm(MeshModelForm):
    tags = TagsField(required=False, help_text="Comma-separated, like billing, eu.")

    class Meta:
        model = Topic
        fields = ["name", "description", "team", "store", "lifecycle", "sunset",
                  "retention_max_age", "retention_max_length", "data_schema", "example_event"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 4}),
            "sunset": forms.DateInput(attrs={"type": "date"}),
            "data_schema": forms.Textarea(attrs={"rows": 8, "class": "form-control font-monospace"}),
            "example_event": forms.Textarea(attrs={"rows": 8, "class": "form-control font-monospace"}),
        }

    field_order = ["name", "description", "team", "store", "tags"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["tags"] = list(self.instance.tags.all())

    def clean_store(self):
        store = self.cleaned_data.get("store")
        problem = check_store_move(self.instance, store)
        if problem:
            raise forms.ValidationError(problem)
        return store

    def _save_m2m(self):
        super()._save_m2m()
        tags = [Tag.objects.get_or_create(name=name)[0] for name in self.cleaned_data.get("tags", [])]
        self.instance.tags.set(tags)


class EventStoreForm(MeshModelForm):
    class Meta:
        model = EventStore
        fields = ["name", "kind", "connection", "description"]
