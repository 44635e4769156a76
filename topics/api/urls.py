from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("topics", views.TopicViewSet)
router.register("stores", views.EventStoreViewSet)
urlpatterns = router.urls
