"""``/topology/``: the live topology page. It draws what ``/api/v1/topology/`` answers
(static/tracing/topology.js polls it), so the page and the API show the same graph to the same user."""

from __future__ import annotations

from django.urls import reverse
from django.views.generic import TemplateView

from governance.models import Application
from meshadmin.models import Team

from .charts import RANGES
from .prometheus import unavailable_reason
from .topology import DEGRADED, FAILING, RATES_RANGE


class TopologyView(TemplateView):
    template_name = "tracing/topology.html"

    def get_context_data(self, **kwargs) -> dict:
        user = self.request.user
        params = self.request.GET
        config = {
            "api": reverse("api:topology"),
            "refresh_seconds": RANGES[RATES_RANGE].scaled()[1],
            "thresholds": {"degraded": DEGRADED, "failing": FAILING},
        }
        return {
            **super().get_context_data(**kwargs),
            "teams": Team.objects.restrict(user).order_by("name").values_list("slug", "name"),
            "applications": Application.objects.restrict(user).order_by("name").values_list("name", flat=True),
            "team": params.get("team", ""), "prefix": params.get("prefix", ""),
            "application": params.get("application", ""),
            "filtered": any(params.get(name) for name in ("team", "prefix", "application")),
            "topology_config": config,
            "prometheus_problem": unavailable_reason(),
        }
