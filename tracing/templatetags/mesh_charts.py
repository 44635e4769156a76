"""``{% mesh_dashboard %}``: the home page's live charts (the home view is meshadmin's; the
charts are ours, so the page includes them without importing us)."""

from django import template

from ..metrics_views import charts_context

register = template.Library()


@register.inclusion_tag("tracing/metrics/dashboard.html")
def mesh_dashboard() -> dict:
    return charts_context(None)
