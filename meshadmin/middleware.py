from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import JsonResponse

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


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's header (``CONTENT_SECURITY_POLICY``), plus the websocket origin of the host the
    page came from in ``connect-src``: browsers that predate CSP 3 do not count ``ws:`` and
    ``wss:`` as ``'self'``, and allowing the schemes alone would allow every host."""

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        websocket = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), websocket]
        parts.update = update
        return parts


class RefuseNullCharacters:
    """400 for an API request whose query carries a NUL character: no field takes one, and the
    database refuses them (a 500 otherwise, wherever a parameter reaches a query unvalidated).
    Bodies are checked by the API's JSON parser (meshadmin.api.parsers)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith("/api/") and any(
                "\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            return JsonResponse({"detail": "Null characters are not allowed in the query."}, status=400)
        return self.get_response(request)
