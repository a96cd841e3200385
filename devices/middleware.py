from .audit import origin


class AuditContextMiddleware:
    """Tags audit events written during a request with its source and client IP."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        source = "admin" if request.path.startswith("/admin/") else "api" if request.path.startswith("/api/") else "web"
        # REMOTE_ADDR is the peer as seen by the WSGI server; behind a proxy the
        # deployment is expected to rewrite it (no trust in X-Forwarded-For here).
        with origin(source, request.META.get("REMOTE_ADDR") or None):
            return self.get_response(request)
