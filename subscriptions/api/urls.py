from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("subscriptions", views.SubscriptionViewSet)
router.register("subscription-changes", views.SubscriptionChangeViewSet)
urlpatterns = router.urls
