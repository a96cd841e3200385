from .audit import origin
from .signin import client_ip


class AuditContextMiddleware:
    """Tags audit events written during a request with its source and client IP."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        source = "admin" if request.path.startswith("/admin/") else "api" if request.path.startswith("/api/") else "web"
        # The same client address the throttles and the sign-in lockout use
        # (X-Forwarded-For only from TRUSTED_PROXY_COUNT proxies).
        with origin(source, client_ip(request)):
            return self.get_response(request)
