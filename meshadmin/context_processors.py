def navigation(request):
    """What the navigation bar needs on every page."""
    return {"request_id": getattr(request, "id", None)}
