"""Sign-in, token refresh and sign-out: who is asking, and the audit trail.

Lockout itself is django-axes (settings: "Sign-in protection"); this module
gives it the client address and the account name the same way the throttles
and the audit trail see them, and records every sign-in event as an
AuditEvent. Passwords and tokens are never recorded: the failure signal's
credentials are read for the email only.
"""
import ipaddress

from django.contrib.auth import signals
from django.dispatch import receiver
from rest_framework.throttling import BaseThrottle

from . import audit
from .audit_actions import Action
from .models import User


def client_ip(request) -> str | None:
    """The client's address, one rule for throttles, lockouts and the audit trail.

    DRF's rule: with ``NUM_PROXIES`` (TRUSTED_PROXY_COUNT) at 0, the socket
    peer (REMOTE_ADDR), so a client cannot pick its own address with
    X-Forwarded-For; with N trusted proxies, the address the outermost of them
    appended.
    """
    ident = BaseThrottle().get_ident(request)
    try:
        return str(ipaddress.ip_address((ident or "").strip()))
    except ValueError:
        return None


def attempted_email(request, credentials: dict | None) -> str | None:
    """The account a sign-in is for, as stored (lower-case): otherwise
    "PAT@x" and "pat@x" would be counted as two accounts."""
    credentials = credentials or {}
    # The API signs in with `email`; the console's login form posts `username`.
    value = credentials.get(User.USERNAME_FIELD) or credentials.get("username")
    if value is None and request is not None:
        data = getattr(request, "data", None) or request.POST
        value = data.get(User.USERNAME_FIELD) or data.get("username")
    return value.strip().lower()[:254] if isinstance(value, str) else None


def record_sign_in(*, user: User) -> None:
    audit.record(actor=user, action=Action.AUTH_SIGN_IN, obj=user)


def record_sign_in_failure(*, email: str | None, locked_out: bool) -> None:
    """No actor: nobody proved who they are. Such rows belong to no tenant, so
    only superusers see them; the attempted email goes into the record,
    never the password."""
    user = User.objects.filter(email=email).first() if email else None
    audit.record(actor=None, action=Action.AUTH_SIGN_IN_FAILED, obj=user or User(email=email or ""),
                 changes={"email": email or "", "locked_out": locked_out})


def record_token_refresh(*, user_id) -> None:
    user = User.objects.filter(pk=user_id).first()
    if user is not None:
        audit.record(actor=user, action=Action.AUTH_TOKEN_REFRESH, obj=user)


def record_sign_out(*, user_id) -> None:
    user = User.objects.filter(pk=user_id).first()
    if user is not None:
        audit.record(actor=user, action=Action.AUTH_SIGN_OUT, obj=user)


# Django's signals cover the console (and every authenticate() call, the API's
# too, for failures); the API views record their successes themselves, since
# token views do not call login().


@receiver(signals.user_logged_in, dispatch_uid="devices.signin.logged_in")
def _logged_in(sender, request, user, **kwargs):
    record_sign_in(user=user)


@receiver(signals.user_login_failed, dispatch_uid="devices.signin.login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    # axes (an app listed before devices) has already counted this failure
    # and flagged the request if it is now locked out.
    record_sign_in_failure(email=attempted_email(request, credentials),
                           locked_out=bool(getattr(request, "axes_locked_out", False)))


@receiver(signals.user_logged_out, dispatch_uid="devices.signin.logged_out")
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record_sign_out(user_id=user.pk)
