from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("subscriptions", views.SubscriptionViewSet)
urlpatterns = router.urls
