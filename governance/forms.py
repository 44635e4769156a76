from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from meshadmin.forms import BootstrapMixin, MeshModelForm
from meshadmin.querysets import CHANGE
from meshruntime.policy import ACTIONS, PolicyError, validate_topic_name

from . import rules
from .models import AccessRule, Application, ApplicationKey, RoutingRule

FILTERS_HELP = ('CloudEvents subscription filters as JSON, like [{"exact": {"type": "com.example.order.created"}}]; '
                "dialects exact, prefix, suffix, all, any, not. Empty: every event.")


class FiltersField(forms.JSONField):
    """A JSON list of CloudEvents filters, checked by the runtime's own validator."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", FILTERS_HELP)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "class": "form-control font-monospace",
                                                          "placeholder": "none: every event"}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        """No filters show as an empty box (its placeholder says "none"), not as ``null``."""
        if value in (None, [], "[]", "null"):
            return ""
        return super().prepare_value(value)

    def clean(self, value):
        filters = super().clean(value)
        filters = [] if filters is None else filters
        try:
            rules.check_filters(filters)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["filters"]) from None
        return filters


class ApplicationForm(MeshModelForm):
    class Meta:
        model = Application
        fields = ["name", "team", "description", "contact"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


class ApplicationKeyForm(MeshModelForm):
    """New keys name their application (one of the user's teams'); later only the description
    and expiry change."""

    expires = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty for a key that does not expire.",
    )
    choice_actions = {"application": CHANGE}

    class Meta:
        model = ApplicationKey
        fields = ["application", "description", "expires"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        if self.instance.pk:
            del self.fields["application"]


class AccessRuleForm(MeshModelForm):
    class Meta:
        model = AccessRule
        fields = ["team", "principal_kind", "principal_application", "principal_team", "topic_pattern",
                  "publish", "subscribe", "effect", "description"]
        labels = {"principal_kind": "Applies to", "principal_application": "Application",
                  "principal_team": "Team", "publish": "Publish", "subscribe": "Subscribe"}
        help_texts = {"principal_team": "Every application of this team, now and later."}

    def clean(self):
        cleaned = super().clean()
        try:
            rules.check_access_rule_authority(self.user, cleaned.get("team"), cleaned.get("topic_pattern"))
        except ValidationError as exc:
            self.add_error(None, exc)  # a dict of field errors: each lands on its field
        return cleaned


class RoutingRuleForm(MeshModelForm):
    """A routing rule; one that reads another team's topics is requested from that team when
    saved (``review_requested`` is then True: the view tells them)."""

    filters = FiltersField()

    class Meta:
        model = RoutingRule
        fields = ["team", "source_pattern", "filters", "targets", "enabled", "order", "description"]
        help_texts = {"targets": "Topics that receive a copy of each matching event.",
                      "source_pattern": "An exact topic name, a prefix such as orders.*, or *. A rule that reads "
                                        "another team's topics routes once that team approves it."}

    review_requested = False
    source_team = None
    #: Where a target's schema refuses data the source admits: saved anyway, the view warns.
    schema_warnings: list[str] = []

    def clean(self):
        cleaned = super().clean()
        targets = cleaned.get("targets")
        if targets is None or self.errors:
            return cleaned
        try:
            self.source_team = rules.check_routing_source(cleaned.get("team"), cleaned.get("source_pattern", ""))
            rules.check_routing_targets(self.user, cleaned.get("team"), targets)
            rules.check_routing_cycle(cleaned.get("source_pattern", ""), targets, cleaned.get("enabled", False),
                                      exclude_pk=self.instance.pk)
        except ValidationError as exc:
            self.add_error(None, exc)
            return cleaned
        self.schema_warnings = [rules.schema_gap_text(source, target, gaps) for source, target, gaps
                                in rules.schema_gaps(cleaned.get("source_pattern", ""), targets)]
        return cleaned

    def save(self, commit=True):
        self.review_requested = self.instance.prepare_review(self.user, self.source_team,
                                                             self.cleaned_data["targets"])
        return super().save(commit)


class SimulatorForm(BootstrapMixin, forms.Form):
    application = forms.ModelChoiceField(queryset=Application.objects.order_by("name"), to_field_name="name")
    topic = forms.CharField(max_length=249, help_text="A topic name; it need not exist yet.",
                            widget=forms.TextInput(attrs={"list": "topic-names", "autocomplete": "off"}))
    action = forms.ChoiceField(choices=[(action, action.capitalize()) for action in ACTIONS],
                               widget=forms.RadioSelect)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._style()
        self.fields["action"].widget.attrs["class"] = "form-check-input"

    def clean_topic(self) -> str:
        topic = self.cleaned_data["topic"].strip()
        try:
            validate_topic_name(topic)
        except PolicyError as exc:
            raise ValidationError(str(exc)[0].upper() + str(exc)[1:] + ".") from None
        return topic
