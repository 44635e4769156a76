from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("applications", views.ApplicationViewSet)
router.register("keys", views.ApplicationKeyViewSet)
router.register("access-rules", views.AccessRuleViewSet)
router.register("routing-rules", views.RoutingRuleViewSet)
urlpatterns = [*router.urls, path("simulator/", views.SimulatorView.as_view(), name="simulator"),
               path("validation/", views.ValidationView.as_view(), name="validation")]
