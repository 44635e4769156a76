from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from .choices import RelatedChoices
from .models import APIToken, Membership, Team
from .querysets import CHANGE
from .throttling import RETRY_AFTER_ATTRIBUTE


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


class MeshModelForm(RelatedChoices, BootstrapMixin, forms.ModelForm):
    """A model form that knows its user: related choices are those of meshadmin.choices (what the
    user may see; for ``team``, the teams in which the user may create things)."""

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        for name, field in self.fields.items():
            if hasattr(field, "queryset"):
                field.queryset = self.related_choices(user, name, field.queryset)
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
    team_fields = ()
    choice_actions = {"team": CHANGE}  # only a team's owners manage its memberships

    class Meta:
        model = Membership
        fields = ["team", "user", "role"]


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


class ThrottledLogin:
    """Says how long to wait when the login gate (meshadmin.throttling) refused the try, instead
    of "wrong password" (the password was not even checked)."""

    def retry_after(self) -> int | None:
        return getattr(self.request, RETRY_AFTER_ATTRIBUTE, None)

    def get_invalid_login_error(self):
        wait = self.retry_after()
        if wait:
            return forms.ValidationError(
                "Too many failed sign-ins for this account from your address: try again in %(wait)s seconds.",
                code="throttled", params={"wait": wait})
        return super().get_invalid_login_error()


class LoginForm(ThrottledLogin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLogin, AdminAuthenticationForm):
    pass
