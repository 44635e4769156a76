"""The chart pages (tabs on topics, subscriptions, applications and runtimes) and the portal's
own ``/metrics``. The charts' data comes over ``/ws/charts/`` (``tracing.chart_consumer``)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from governance.models import Application
from meshadmin.views.generic import ObjectDetailView
from rollout.models import Runtime
from subscriptions.models import Subscription
from topics.models import Topic

from . import portal_metrics
from .charts import DEFAULT_RANGE, RANGES, charts_for
from .prometheus import unavailable_reason


def charts_context(model, obj=None) -> dict:
    """What ``tracing/metrics/charts.html`` needs: the charts of ``model`` for ``obj``, the
    ranges, and why there can be no data at all (no Prometheus configured)."""
    specs = [{**chart.as_json(), "id": f"c{n}", "chart": chart.name, "object": None if obj is None else obj.pk}
             for n, chart in enumerate(charts_for(model))]
    return {"chart_specs": specs, "ranges": list(RANGES.values()), "default_range": DEFAULT_RANGE,
            "prometheus_problem": unavailable_reason()}


class ChartsTabView(ObjectDetailView):
    template_name = "tracing/metrics/tab.html"
    extra_tabs_template = ""

    def extra_context(self, request, obj) -> dict:
        return {**charts_context(self.queryset.model, obj), "extra_tabs_template": self.extra_tabs_template}


class TopicTrafficView(ChartsTabView):
    queryset = Topic.objects.all()
    tab = "traffic"


class SubscriptionMetricsView(ChartsTabView):
    queryset = Subscription.objects.select_related("topic", "application")
    tab = "metrics"
    extra_tabs_template = "subscriptions/delivery_tab.html"


class ApplicationTrafficView(ChartsTabView):
    queryset = Application.objects.all()
    tab = "traffic"


class RuntimeMetricsView(ChartsTabView):
    queryset = Runtime.objects.all()
    tab = "metrics"


class PortalMetricsView(APIView):
    """``/metrics``: the portal's own series (``tracing.portal_metrics``) for Prometheus.

    Behind the API's authentication, like the service discovery: a token (Prometheus's scrape
    config sends it as ``Authorization: Bearer …``) or a signed-in session; anonymous requests
    get 401. Any active user's token will do, a read-only one included: the series name no
    team's objects, only the portal's own work.
    """

    @extend_schema(exclude=True)  # Prometheus's text format, not part of the REST API
    def get(self, request):
        return HttpResponse(portal_metrics.render(), content_type=portal_metrics.CONTENT_TYPE_LATEST)


portal_metrics_view = login_not_required(PortalMetricsView.as_view())
