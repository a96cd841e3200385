"""OpenAPI: every operation lists the errors it can answer, with the one error body.

Which errors apply is worked out from what the view is (authenticated, under
a tenant, throttled, writing, paginated, filtered); a view adds the rest
(403 on reads, 409) in ``documented_errors``. The schema test checks the
result, and schemathesis checks that no response falls outside it.
"""
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse

from .errors import ErrorSerializer
from .throttling import SAFE_METHODS

MESSAGES = {
    400: "Bad input; `fields` says which.",
    401: "Not signed in, or the token is invalid or expired.",
    403: "Signed in, but this needs more rights on the object.",
    404: "No such object, or not one you can see (another tenant's objects always answer 404).",
    409: "Clashes with what exists (a live share, a pending invitation, a name in use).",
    415: "The body is not JSON (`Content-Type: application/json`).",
    429: "Too many requests; retry after the Retry-After header's seconds.",
    503: "Cannot be done right now (e.g. no active signing key); `detail` says why.",
}


class AutoSchema(openapi.AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in sorted(self.error_codes()):
            responses.setdefault(
                str(code),
                self._get_response_for_code(OpenApiResponse(ErrorSerializer, MESSAGES[code]), str(code),
                                            direction=direction),
            )
        return responses

    def error_codes(self) -> set[int]:
        view, method = self.view, self.method.upper()
        codes = {401}  # every endpoint: missing credentials, or bad ones on the auth endpoints
        writes = method not in SAFE_METHODS
        if method in ("POST", "PUT", "PATCH") or self._is_list_view() or self.get_filter_backends():
            codes.add(400)
        if writes and view.authentication_classes:
            codes.add(403)  # the services' own refusals, and CSRF for session clients
        if "{" in self.path or self._is_list_view():
            codes.add(404)  # an invisible object or tenant; a page past the end
        if writes and getattr(view, "throttle_scope", None):
            codes.add(429)
        codes |= set(getattr(view, "documented_errors", {}).get(method.lower(), ()))
        return codes
