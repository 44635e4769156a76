"""meshadmin.tabs: apps add tabs to other apps' object pages, shown to those they are meant for."""

from __future__ import annotations

import pytest
from django.urls import reverse

from meshadmin import tabs
from meshadmin.models import Team
from tests.portal_support.personas import client_for


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(tabs, "_registry", tabs.defaultdict(list))
    monkeypatch.setattr(tabs, "_actions", tabs.defaultdict(list))
    return tabs


def test_a_registered_tab_shows_on_the_models_pages_in_weight_order(registry, payments, alice):
    registry.register(Team, tabs.ObjectTab("later", "Later", "meshadmin:team_history", weight=200))
    registry.register(Team, tabs.ObjectTab("sooner", "Sooner", "meshadmin:team_history", weight=10))
    page = client_for(alice).get(reverse("meshadmin:team", args=[payments.pk])).content.decode()
    url = reverse("meshadmin:team_history", args=[payments.pk])
    assert f'href="{url}" data-testid="tab-sooner">Sooner<' in page
    assert page.index('data-testid="tab-sooner"') < page.index('data-testid="tab-later"')


def test_a_tab_is_shown_only_to_whom_it_is_visible(registry, payments, alice, carol):
    registry.register(Team, tabs.ObjectTab("private", "Private", "meshadmin:team_history",
                                           visible=lambda user, team: team.memberships.filter(user=user).exists()))
    url = reverse("meshadmin:team", args=[payments.pk])
    assert 'data-testid="tab-private"' in client_for(alice).get(url).content.decode()
    assert 'data-testid="tab-private"' not in client_for(carol).get(url).content.decode()


def test_two_tabs_of_one_name_on_a_model_are_refused(registry):
    registry.register(Team, tabs.ObjectTab("live", "Live", "meshadmin:team_history"))
    with pytest.raises(ValueError, match="meshadmin.Team already has a tab named 'live'"):
        registry.register(Team, tabs.ObjectTab("live", "Live again", "meshadmin:team_history"))


def test_a_registered_action_is_a_button_in_the_header_for_whom_it_is_visible(registry, payments, alice, carol):
    registry.register_action(Team, tabs.ObjectAction("ring", "Ring the bell", "meshadmin:team_history",
                                                     visible=lambda user, team: user.username == "alice"))
    url = reverse("meshadmin:team", args=[payments.pk])
    history = reverse("meshadmin:team_history", args=[payments.pk])
    assert f'href="{history}" data-testid="action-ring">Ring the bell<' in client_for(alice).get(url).content.decode()
    assert 'data-testid="action-ring"' not in client_for(carol).get(url).content.decode()
    with pytest.raises(ValueError, match="meshadmin.Team already has an action named 'ring'"):
        registry.register_action(Team, tabs.ObjectAction("ring", "Again", "meshadmin:team_history"))
