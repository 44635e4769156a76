"""Review workflows: what flows out of a team's topics needs that team's approval.

A subscription (the topic's team reviews it), a change to an approved subscription, and a routing
rule that reads another team's topic all follow the same pattern: named steps, each allowed from
some states into one target state, to the editors of some *sides* (teams). The model says who is
on which side (``sides(user)``) and how to name the sides for people (``side_names``); this
module does the rest, so that pages and the API share one set of rules and one set of messages.

A refusal raises :class:`TransitionRefused` with a message for people: :class:`NotPermitted`
(HTTP 403) for the wrong side, :class:`IllegalTransition` (HTTP 409) for the wrong state.
Other apps refuse steps for reasons of their own through :data:`transition_checked`, so that
every path (pages, the API, the admin, a shell) meets their rule: the access policy refuses to
approve or resume a subscription it would not let deliver (``governance.rules.refuse_denied_subscription``).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone


class TransitionRefused(Exception):
    """A workflow step that may not happen. ``status`` is what pages and the API answer."""

    status = 409


class IllegalTransition(TransitionRefused):
    """The object is not in a state the step starts from."""

    status = 409


class NotPermitted(TransitionRefused):
    """The user is not on a side that may take this step."""

    status = 403


@dataclass(frozen=True)
class Transition:
    name: str
    done: str  # the past participle, for messages
    sources: tuple[str, ...]
    target: str
    sides: frozenset[str]


#: Steps that record who reviewed, when, and why.
REVIEW_STEPS = ("approve", "reject")

#: Sent (``sender`` = the model, ``instance``, ``step``: the :class:`Transition`, ``by``) once a
#: step is allowed by side and state, before anything is saved, with the row locked. A receiver
#: refuses the step by raising :class:`TransitionRefused` with its reason.
transition_checked = Signal()


class Reviewed:
    """Mixin for a model with ``state``, ``reviewer_comment``, ``reviewed_by`` and ``reviewed_at``.

    Subclasses define ``TRANSITIONS`` (name -> :class:`Transition`), ``sides(user)`` and
    ``side_names(transition)``. Mix in before ``models.Model``.
    """

    TRANSITIONS: dict[str, Transition] = {}

    def sides(self, user) -> frozenset[str]:
        raise NotImplementedError

    def side_names(self, transition: Transition) -> str:
        raise NotImplementedError

    def available_transitions(self, user, sides: frozenset[str] | None = None) -> list[str]:
        """The steps ``user`` may take now, for buttons (``sides``: if already known)."""
        sides = self.sides(user) if sides is None else sides
        return [t.name for t in self.TRANSITIONS.values() if self.state in t.sources and t.sides & sides]

    def transition(self, name: str, *, by, comment: str = "") -> None:
        """Take the workflow step ``name`` as user ``by``, or raise :class:`TransitionRefused`.

        The row is locked while the step is checked and saved, so two reviewers clicking at
        once cannot both succeed. The audit log records the change through its signals.
        """
        noun = self._meta.verbose_name
        step = self.TRANSITIONS.get(name)
        if step is None:
            raise IllegalTransition(f"There is no step {name!r}; steps are {', '.join(self.TRANSITIONS)}.")
        if not step.sides & self.sides(by):
            raise NotPermitted(f"Only the owners and members of {self.side_names(step)} may {name} this {noun}.")
        if name == "reject" and not comment.strip():
            raise ValidationError({"comment": "Say why you reject the request: the requesting team reads it."})
        with transaction.atomic():
            current = type(self)._base_manager.select_for_update().only("state").get(pk=self.pk)
            self.state = current.state
            if self.state not in step.sources:
                raise IllegalTransition(self._illegal_message(step))
            transition_checked.send(sender=type(self), instance=self, step=step, by=by)
            self.state = step.target
            fields = ["state", *self.transition_fields(step, by)]
            if name in REVIEW_STEPS:
                self.reviewer_comment = comment.strip()
                self.reviewed_by = by
                self.reviewed_at = timezone.now()
                fields += ["reviewer_comment", "reviewed_by", "reviewed_at"]
            if any(f.name == "updated" for f in self._meta.concrete_fields):
                fields.append("updated")
            self.save(update_fields=fields)
            self.after_transition(step, by)

    def transition_fields(self, step: Transition, by) -> list[str]:
        """Further fields the step sets on ``self`` (and that must be saved with it)."""
        return []

    def after_transition(self, step: Transition, by) -> None:
        """Work done in the step's transaction, after the state is saved."""

    def _illegal_message(self, step: Transition) -> str:
        noun = self._meta.verbose_name
        if self.state == step.target:
            return f"This {noun} is already {self.get_state_display().lower()}."
        sources = " or ".join(step.sources)
        article = "an" if sources[0] in "aeiou" else "a"
        return f"This {noun} is {self.state}: only {article} {sources} {noun} can be {step.done}."
