def navigation(request):
    """What the navigation bar needs on every page."""
    return {"request_id": getattr(request, "id", None)}


def inbox(request):
    """How many subscription requests await the user's review, for the navigation's badge.

    One COUNT query, run only when a template shows the badge (lazily), and never for anonymous
    visitors.
    """
    from django.utils.functional import SimpleLazyObject

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"inbox_count": 0}

    def count() -> int:
        from subscriptions.models import Subscription

        return Subscription.objects.awaiting_review_by(user).count()

    return {"inbox_count": SimpleLazyObject(count)}
