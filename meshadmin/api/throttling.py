"""DRF throttling of the API: ``MESH_API_RATE`` calls per token (``REST_FRAMEWORK``'s
``DEFAULT_THROTTLE_RATES["api"]``), else per signed-in user, else per client address. Over the
rate the answer is 429 with ``Retry-After``. Wrong tokens are throttled before this, by address
(meshadmin.api.authentication)."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from meshadmin.models import APIToken
from meshadmin.throttling import client_address


class TokenRateThrottle(SimpleRateThrottle):
    scope = "api"
    cache_format = "throttle:api:%(scope)s:%(ident)s"

    def get_rate(self):
        # Read at each request, not when the class is defined: tests and settings changes apply.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request, view):
        if isinstance(request.auth, APIToken):
            ident = f"token-{request.auth.prefix}"  # prefixes are random and never reused
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"address-{client_address(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
