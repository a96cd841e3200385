"""Scoped throttles for the endpoints worth guessing or flooding: sign-in and sharing."""
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ScopedWriteThrottle(ScopedRateThrottle):
    """Counts writes only, per user (per client IP before sign-in).

    A view names its bucket in ``throttle_scope``; reads of the same view
    (listing shares) are not counted.
    """

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

    def get_rate(self):
        # Read at request time rather than import time, so changed settings apply at once.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
