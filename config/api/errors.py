"""One error body everywhere: ``{"error", "code", "detail": message, "fields": {field: [messages]}}``.

Services raise ``devices.errors.DomainError`` (bad input, 400, or a clash
with the current state, 409, by its code's kind; ``code`` is then its
registry code, otherwise it equals ``error``) and ``PermissionDenied`` (no
right, 403); DRF, django-filter and simplejwt raise their own exceptions.
All of them end up in the same shape here, so a client needs one parser.
"""
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from devices.errors import DomainError, Kind


class Conflict(exceptions.APIException):
    """The request is valid but clashes with what exists (a live share, a pending invitation)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This conflicts with the current state of the resource."
    default_code = "conflict"

    def __init__(self, detail=None, fields: dict | None = None):
        super().__init__(detail)
        self.fields = fields or {}


class LockedOut(exceptions.Throttled):
    """Sign-in refused for a while: too many failures for the account or from the address (django-axes)."""

    default_detail = "Too many failed sign-ins for this account or from this address."
    default_code = "locked_out"


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (4xx and 5xx)."""

    error = serializers.CharField(help_text="A stable machine-readable code, e.g. invalid, not_found, conflict.")
    code = serializers.CharField(help_text="For a service's refusal its code from devices/errors.py, "
                                           "e.g. share_exists; otherwise the same as error.")
    detail = serializers.CharField(help_text="A human-readable message.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per request field; empty when the error is not about one field.",
    )


def body(code: str, detail: str, fields: dict | None = None) -> dict:
    return {"error": code, "code": code, "detail": detail, "fields": fields or {}}


def exception_handler(exc, context):
    """DRF's handler has already put WWW-Authenticate on 401s (APIView.handle_exception)."""
    exc = _as_drf(exc, context)
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django answer 500 and log it
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    return Response(_body_for(exc), status=exc.status_code, headers=headers)


# Django's own error pages (config/urls.py handler400/403/404/500): what never
# reaches a DRF view (a path no route matches, e.g. with a newline; an
# unhandled exception) still answers in the one shape under /api/.


def _under_api(request) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request, exception):
    if _under_api(request):
        return JsonResponse(body("bad_request", "Bad request."), status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _under_api(request):
        return JsonResponse(body("permission_denied", "You do not have permission to perform this action."),
                            status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _under_api(request):
        return JsonResponse(body("not_found", "No such API endpoint."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    # Django has already logged the exception (django.request) before calling this.
    if _under_api(request):
        return JsonResponse(body("server_error", "Something went wrong on our side; it has been logged."),
                            status=500)
    return defaults.server_error(request)


def _as_drf(exc, context):
    """Django's exceptions, raised by services and shortcuts, as their DRF counterparts."""
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, DomainError):
        return _domain(exc, context)
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(_django_messages(exc, context))
    if isinstance(exc, Conflict):
        exc.fields = _aliased(exc.fields, context)
    return exc


def _domain(exc: DomainError, context) -> exceptions.APIException:
    """A service's refusal: its kind picks 400 or 409, its code travels in the body."""
    if exc.kind == Kind.CONFLICT:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {}
        drf = Conflict(" ".join(exc.messages), fields=_aliased(fields, context))
    else:
        drf = exceptions.ValidationError(_django_messages(exc, context))
    drf.registry_code = exc.code.value
    return drf


def _aliased(fields: dict, context) -> dict:
    """Services name their fields after their own arguments (``grantee``,
    ``email``); a view maps them onto its request fields."""
    aliases = getattr(context.get("view"), "service_field_aliases", {})
    return {aliases.get(field, field): messages for field, messages in fields.items()}


def _django_messages(exc: DjangoValidationError, context) -> dict | list:
    if hasattr(exc, "error_dict"):
        fields = {"non_field_errors" if f == NON_FIELD_ERRORS else f: m for f, m in exc.message_dict.items()}
        return _aliased(fields, context)
    return exc.messages


def _body_for(exc: exceptions.APIException) -> dict:
    shaped = _shape(exc)
    shaped["code"] = getattr(exc, "registry_code", None) or shaped["code"]
    return shaped


def _shape(exc: exceptions.APIException) -> dict:
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        return _validation_body(detail)
    if isinstance(detail, dict):
        # simplejwt's InvalidToken carries {"detail", "code", "messages"}.
        return body(str(detail.get("code", _code(exc))), str(detail.get("detail", exc.default_detail)))
    if isinstance(detail, list):
        return body(_code(exc), " ".join(str(item) for item in detail))
    return body(getattr(detail, "code", None) or _code(exc), str(detail), getattr(exc, "fields", None))


def _validation_body(detail) -> dict:
    if isinstance(detail, list):
        return body("invalid", " ".join(_flatten(detail)) or "Invalid input.")
    fields = {field: _flatten(messages) for field, messages in detail.items()}
    general = fields.pop("non_field_errors", [])
    if general:
        return body("invalid", " ".join(general), fields)
    first = next(iter(fields.items()), None)
    message = f"{first[0]}: {first[1][0]}" if first and first[1] else "Invalid input."
    return body("invalid", message, fields)


def _flatten(messages) -> list[str]:
    if isinstance(messages, dict):  # nested serializer errors: "field.sub: message"
        return [f"{key}: {m}" for key, value in messages.items() for m in _flatten(value)]
    if isinstance(messages, list):
        return [m for item in messages for m in _flatten(item)]
    return [str(messages)]


def _code(exc: exceptions.APIException) -> str:
    return exc.default_code if isinstance(exc.default_code, str) else "error"
