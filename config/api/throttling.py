"""Scoped throttles for the endpoints worth guessing or flooding: sign-in and sharing."""
import logging
import threading

import redis
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

log = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


# What a cache backend raises when its server is away; the Redis backend raises
# redis-py's errors, which are not OSErrors.
CACHE_OUTAGE_ERRORS = (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class _Outage:
    """One WARNING when the throttle cache goes away and one when it is back,
    not one per request."""

    def __init__(self):
        self._lock = threading.Lock()
        self.down = False

    def started(self, exc: BaseException) -> None:
        with self._lock:
            if self.down:
                return
            self.down = True
        log.warning("throttle cache unreachable (%s); requests are not throttled until it is back",
                    exc.__class__.__name__)

    def ended(self) -> None:
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
        log.warning("throttle cache reachable again; throttling resumed")


outage = _Outage()


class ScopedThrottle(ScopedRateThrottle):
    """Counts every request, per user (per client IP before sign-in), in the
    bucket the view names in ``throttle_scope``: for reads that cost more
    than a database query (a device's live sessions ask AWS IoT).

    When the cache holding the counters is down the request is let through:
    a throttle guards against floods, and failing closed would turn a cache
    outage into an outage of every write (which the outbox would otherwise
    carry through).
    """

    def allow_request(self, request, view):
        try:
            allowed = super().allow_request(request, view)
        except CACHE_OUTAGE_ERRORS as exc:
            outage.started(exc)
            return True
        outage.ended()
        return allowed

    def get_rate(self):
        # Read at request time rather than import time, so changed settings apply at once.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class ScopedWriteThrottle(ScopedThrottle):
    """Counts writes only: reads of the same view (listing shares) are not
    counted."""

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
