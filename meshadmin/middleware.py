from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware

from .audit import audit_context


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Pages send anonymous visitors to the login page; the API answers 401 on its own."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class RequestContextMiddleware:
    """Gives every request an id and makes it, and its user, the actor of the audit log."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with audit_context(request=request) as ctx:
            request.id = ctx.request_id
            response = self.get_response(request)
            response["X-Request-ID"] = str(ctx.request_id)
            return response
