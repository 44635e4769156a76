from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("runtimes", views.RuntimeViewSet)
router.register("config-versions", views.ConfigVersionViewSet)
urlpatterns = router.urls
