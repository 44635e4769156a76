from __future__ import annotations

from django import forms

from .models import APIToken, Membership, Team
from .querysets import VIEW


def editor_teams(user):
    """Teams in which ``user`` may create and change things (owner or member; all for staff)."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_staff or user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role__in=Membership.EDITOR_ROLES)


class BootstrapMixin:
    def _style(self):
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input"
            elif isinstance(widget, forms.Select | forms.SelectMultiple):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs.setdefault("class", css)


class MeshModelForm(BootstrapMixin, forms.ModelForm):
    """A model form that knows its user: related choices are only what the user may see, and
    ``team`` only the teams in which the user may create things."""

    team_fields = ("team",)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        for name, field in self.fields.items():
            if not hasattr(field, "queryset"):
                continue
            if name in self.team_fields:
                field.queryset = editor_teams(user)
            elif hasattr(field.queryset, "restrict"):
                field.queryset = field.queryset.restrict(user, VIEW)
        self._style()


class TeamForm(MeshModelForm):
    class Meta:
        model = Team
        fields = ["name", "slug", "description"]

    def save(self, commit=True):
        creating = self.instance.pk is None
        team = super().save(commit)
        if creating and commit:
            team.add_creator(self.user)
        return team


class MembershipForm(MeshModelForm):
    class Meta:
        model = Membership
        fields = ["team", "user", "role"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        # Only a team's owners manage its memberships.
        self.fields["team"].queryset = Team.objects.restrict(user, "change")


class APITokenForm(MeshModelForm):
    expires = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty for a token that does not expire.",
    )

    class Meta:
        model = APIToken
        fields = ["description", "read_only", "expires"]


class ReviewForm(forms.Form):
    """The comment of a review (approve, reject): required to reject, read by the asking team."""

    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "form-control"}),
                              help_text="Required to reject; the requesting team reads it.")
