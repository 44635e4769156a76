def navigation(request):
    """What the navigation bar needs on every page."""
    return {"request_id": getattr(request, "id", None)}


def inbox(request):
    """How many requests await the user's review (subscriptions, changes to them, routing rules), for the
    navigation's badge.

    One COUNT query over all kinds, run only when a template shows the badge (lazily), and never for anonymous
    visitors.
    """
    from django.utils.functional import SimpleLazyObject

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"inbox_count": 0}

    def count() -> int:
        from governance.models import RoutingRule
        from subscriptions.models import Subscription, SubscriptionChange

        kinds = [Subscription.objects.awaiting_review_by(user), SubscriptionChange.objects.awaiting_review_by(user),
                 RoutingRule.objects.awaiting_review_by(user)]
        first, *others = (queryset.order_by().values("pk") for queryset in kinds)
        return first.union(*others, all=True).count()

    return {"inbox_count": SimpleLazyObject(count)}
