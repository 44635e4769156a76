"""Pages of ``tracing`` (namespace ``tracing``)."""

app_name = "tracing"
urlpatterns: list = []
