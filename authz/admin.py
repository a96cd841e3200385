import logging

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import CharField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from config.console import ReadOnlyAdminMixin, ReadOnlyTenantAdmin
from devices.models import Device, Membership, User
from devices.selectors import tenants_for
from lambda_bridge import vocabulary

from .live import selectors as live_selectors
from .live import services as live_services
from .models import AccessReceipt, IssuedCredential, PrincipalSync, SigningKey
from .snapshots import outbox
from .tokens import credentials, iot, rotation

log = logging.getLogger(__name__)


def _with_email(queryset):
    """The user's email beside each row whose principal is a user id (held as text)."""
    email = User.objects.annotate(id_text=Cast("pk", CharField())).filter(id_text=OuterRef("principal"))
    return queryset.annotate(email=Subquery(email.values("email")[:1]))


def _who(obj) -> str:
    if obj.kind == PrincipalSync.Kind.USER:
        return obj.email or "(deleted user)"
    return obj.principal


class LaggingFilter(admin.SimpleListFilter):
    title = "sync"
    parameter_name = "sync"

    def lookups(self, request, model_admin):
        return [("lagging", "lagging"), ("failing", "failing"), ("current", "in sync")]

    def queryset(self, request, queryset):
        if self.value() == "lagging":
            return queryset.lagging()
        if self.value() == "failing":
            return queryset.lagging().exclude(last_error="")
        if self.value() == "current":
            return queryset.in_sync()
        return queryset


@admin.register(PrincipalSync)
class PrincipalSyncAdmin(ReadOnlyTenantAdmin):
    list_display = ["key", "tenant", "kind", "who", "desired_version", "pushed_version", "in_sync", "attempts",
                    "last_error", "changed_at", "pushed_at"]
    list_filter = [LaggingFilter, ("tenant", admin.RelatedOnlyFieldListFilter), "kind"]
    search_fields = ["principal"]
    actions = ["resync_selected"]

    def get_queryset(self, request):
        # The principal column holds ids as text; match them as text, in the list query itself.
        return _with_email(super().get_queryset(request).select_related("tenant"))

    @admin.display(description="principal")
    def who(self, obj):
        return _who(obj)

    @admin.display(boolean=True)
    def in_sync(self, obj):
        return obj.in_sync

    @admin.action(description="Resync selected snapshots (push them again)")
    def resync_selected(self, request, queryset):
        ids = outbox.resync(actor=request.user, rows=list(queryset.select_related("tenant")))
        self.message_user(request, f"Queued {len(ids)} snapshot(s) for a push.", messages.SUCCESS)


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Platform-wide keys: superusers only, read-only, never the private half.
    Rotation runs from beat and `manage.py signing_keys`."""

    list_display = ["slot", "kid", "compact", "state", "bits", "age", "next_step", "created_at", "published_at",
                    "activated_at", "retiring_at", "retired_at"]
    list_filter = ["state", "slot"]
    search_fields = ["kid", "compact_kid"]
    fields = ["slot", "kid", "compact_kid", "compact_public", "state", "bits", "public_pem", "created_at",
              "staged_at", "published_at", "activated_at", "retiring_at", "retired_at"]
    readonly_fields = fields

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def get_queryset(self, request):
        return super().get_queryset(request).defer("private_key_encrypted", "compact_private_encrypted")

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET" and self.has_view_permission(request):
            st = rotation.status()
            sync = "published" if st.in_sync else "NOT YET PUBLISHED"
            self.message_user(request, f"Next step: {st.next.describe(st.now)}. Key set v{st.desired_version} "
                                       f"{sync}{': ' + st.last_error if st.last_error else ''}.", messages.INFO)
        return super().changelist_view(request, extra_context)

    @admin.display(description="compact kid")
    def compact(self, obj):
        # A key made before compact tokens cannot sign them (docs/signing-keys.md#the-compact-half).
        return obj.compact_kid or "none"

    @admin.display(description="age")
    def age(self, obj):
        return rotation.format_duration(timezone.now() - obj.created_at)

    @admin.display(description="next step")
    def next_step(self, obj):
        row = next((k for k in rotation.status(history=0).keys if k.kid == obj.kid), None)
        if row is None or not row.next_step:
            return "-"
        return f"{row.next_step} at {rotation.format_when(row.next_at)}" if row.next_at else row.next_step


# --- IoT credentials --------------------------------------------------------------


class LiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("live", "live"), ("expired", "expired")]

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.live(timezone.now())
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=timezone.now())
        return queryset


def _shown(creds: credentials.Credentials) -> list[tuple[str, str]]:
    """What a device needs to connect with this kind of credential, under
    the API's names (AWS IoT SDK parameters)."""
    common = [
        ("credential", creds.credential), ("clientId", creds.client_id), ("endpoint", creds.endpoint),
        ("authorizerName", creds.authorizer_name), ("tokenKeyName", creds.token_key_name),
        ("expiresAt", creds.expires_at.isoformat().replace("+00:00", "Z")), ("token", creds.token),
    ]
    if creds.compact:
        return [*common, ("mqttUsername", creds.mqtt_username), ("mqttPassword", creds.mqtt_password),
                ("httpsPublish", _curl(creds))]
    return [*common, ("tokenSignature", creds.token_signature), ("mqttUsername", creds.mqtt_username),
            ("wssUrl", creds.wss_url)]


def _curl(creds: credentials.Credentials) -> str:
    """An HTTPS publish as the device, the parameters in headers
    (docs/credentials.md#compact-device-tokens)."""
    url = creds.publish_url(credentials.example_topic(creds.client_id))
    headers = " ".join(f"-H '{name}: {value}'" for name, value in creds.http_headers.items())
    return f"curl --fail -X POST '{url}' {headers} -d '{{\"t\":21.5}}'"


class IssueDeviceCredentialsForm(forms.Form):
    device = forms.ModelChoiceField(queryset=Device.objects.none())
    credential = forms.ChoiceField(
        choices=[(vocabulary.SIGNED_CREDENTIAL, "Signed: a JWT and its RSA signature (most devices)"),
                 (vocabulary.COMPACT_CREDENTIAL, "Compact: at most 200 characters, for ultra-low-power devices")],
        initial=vocabulary.SIGNED_CREDENTIAL, widget=forms.RadioSelect, required=False,
        help_text="A compact token goes to the unsigned authorizer as the MQTT password or in an HTTPS header; "
                  "choose it only for devices that count bytes.")
    lifetime = forms.IntegerField(label="Lifetime (seconds)", required=False, min_value=1)

    def __init__(self, *args, devices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device"].queryset = devices
        self.fields["device"].label_from_instance = lambda device: f"{device.tenant.name}: {device}"
        self.fields["lifetime"].help_text = (
            f"Empty for the default ({settings.DEVICE_TOKEN_LIFETIME_SECONDS} s); "
            f"{credentials.MIN_LIFETIME_SECONDS} to {settings.DEVICE_TOKEN_LIFETIME_SECONDS} s.")


@admin.register(IssuedCredential)
class IssuedCredentialAdmin(ReadOnlyTenantAdmin):
    """Which client ids got tokens, until when; never a token. Tenant admins
    issue a device's credentials from here (the token is shown once)."""

    list_display = ["client_id", "kind", "credential", "who", "tenant", "short_kid", "scope", "issued_by", "issued_at",
                    "expires_at", "live"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter), "kind", "credential", LiveFilter]
    search_fields = ["client_id", "principal", "jti"]
    list_select_related = ["tenant", "issued_by"]

    def get_queryset(self, request):
        return _with_email(super().get_queryset(request))

    @admin.display(description="principal")
    def who(self, obj):
        return _who(obj)

    @admin.display(description="kid")
    def short_kid(self, obj):
        return f"{obj.kid[:12]}…"

    @admin.display(boolean=True)
    def live(self, obj):
        return obj.expires_at > timezone.now()

    def get_urls(self):
        issue = self.admin_site.admin_view(self.issue_device_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_issue_device"
        return [path("issue-device/", issue, name=name), *super().get_urls()]

    def issuable_devices(self, request):
        # The devices of the tenants the user administers, all of which they may
        # issue for. A device they own where they are a plain member is left
        # out, as every console page leaves that tenant out (the API issues
        # it). The service checks owns_or_administers again.
        return Device.objects.administered_by(request.user).select_related("tenant").order_by("tenant__name", "name")

    def issue_device_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        devices = self.issuable_devices(request)
        issued = None
        if request.method == "POST":
            form = IssueDeviceCredentialsForm(request.POST, devices=devices)
            if form.is_valid():
                issued = self._issue(request, form)
        else:
            form = IssueDeviceCredentialsForm(initial={"device": request.GET.get("device")}, devices=devices)
        context = {
            **self.admin_site.each_context(request),
            "title": "Issue device credentials", "opts": self.opts, "form": form,
            "device": issued and form.cleaned_data["device"], "credentials": issued and _shown(issued),
            "compact": bool(issued) and issued.compact,
        }
        # admin_view() marks every admin page never-cache (no-store), which this
        # page relies on: it may carry a bearer token.
        return TemplateResponse(request, "admin/authz/issuedcredential/issue_device.html", context)

    def _issue(self, request, form) -> credentials.Credentials | None:
        data = form.cleaned_data
        try:
            # Audited with source "admin" by AuditContextMiddleware, like every console write.
            return credentials.issue_device_credentials(actor=request.user, device=data["device"],
                                                        lifetime=data.get("lifetime"),
                                                        credential=data["credential"] or vocabulary.SIGNED_CREDENTIAL)
        except ValidationError as error:
            if hasattr(error, "error_dict"):
                for field, errors in error.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            message = "; ".join(error.messages)
        except PermissionDenied as error:
            message = str(error) or "You are not allowed to do this."
        except credentials.CredentialsUnavailable as error:
            message = f"Credentials cannot be issued right now: {error}"
        self.message_user(request, f"Nothing issued: {message}", messages.ERROR)
        return None


# --- live access: receipts, a device's sessions, revokes (docs/console.md#live-access) ---


@admin.register(AccessReceipt)
class AccessReceiptAdmin(ReadOnlyTenantAdmin):
    """What each narrowing did to live connections. The pages that end
    sessions and revoke credentials or a member's access hang here (the
    Device and Membership lists reach them by URL name: devices does not
    import authz)."""

    list_display = ["id", "tenant", "actor", "state", "closed_count", "created_at", "finished_at"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant", "actor"]

    def get_queryset(self, request):
        # Its actor sees a receipt too, like the API (visible_to, not
        # administered_by), in the tenants they are still in.
        return AccessReceipt.objects.visible_to(request.user).filter(tenant__in=tenants_for(request.user))

    @admin.display(description="state")
    def state(self, obj):
        return "done" if obj.done else "pending"

    @admin.display(description="closed")
    def closed_count(self, obj):
        return obj.closed if obj.done else "-"

    def get_urls(self):
        def page(view, route, name):
            return path(route, self.admin_site.admin_view(view), name=f"authz_accessreceipt_{name}")

        return [
            page(self.device_sessions_view, "device/<int:device>/sessions/", "device_sessions"),
            page(self.revoke_device_view, "device/<int:device>/revoke-credentials/", "revoke_device"),
            page(self.revoke_member_view, "membership/<int:membership>/revoke-access/", "revoke_member"),
            page(self.sign_out_member_view, "membership/<int:membership>/sign-out/", "sign_out_member"),
            *super().get_urls(),
        ]

    def _device(self, request, pk) -> Device:
        return get_object_or_404(Device.objects.administered_by(request.user).select_related("tenant"), pk=pk)

    def _page(self, request, template, **context):
        context = {**self.admin_site.each_context(request), "opts": self.opts, **context}
        return TemplateResponse(request, f"admin/authz/accessreceipt/{template}", context)

    def _refused(self, request, error) -> None:
        message = "; ".join(error.messages) if isinstance(error, ValidationError) else (str(error) or "Not allowed.")
        self.message_user(request, f"Nothing done: {message}", messages.ERROR)

    def device_sessions_view(self, request, device):
        device = self._device(request, device)
        if request.method == "POST":
            self._end_session(request, device, request.POST.get("client_id", ""))
            return redirect(request.path)
        sessions, unavailable = [], ""
        try:
            sessions = live_selectors.device_sessions(actor=request.user, device=device)
        except PermissionDenied as error:
            self._refused(request, error)
        except iot.IotError as error:
            # The reason names endpoints and AWS's messages: for operators, as in the API.
            log.error("live sessions of a device unavailable: %s", error)
            unavailable = "AWS IoT cannot be asked about live connections right now; the operators have been told why."
        return self._page(request, "device_sessions.html", title=f"Live sessions of {device.name}", device=device,
                          sessions=sessions, unavailable=unavailable)

    def _end_session(self, request, device, client_id: str) -> None:
        try:
            closed = live_services.end_session(actor=request.user, device=device, client_id=client_id)
        except (ValidationError, PermissionDenied) as error:
            self._refused(request, error)
        except iot.IotError as error:
            log.error("ending session %s of %s failed: %s", client_id, device.thing_name, error)
            self.message_user(request, "AWS IoT could not be asked; the operators have been told why.",
                              messages.ERROR)
        else:
            done = "ended" if closed else "had already ended"
            self.message_user(request, f"The session {client_id} {done}. It may reconnect: revoke to keep it out.",
                              messages.SUCCESS)

    def revoke_device_view(self, request, device):
        device = self._device(request, device)
        if request.method == "POST":
            return self._confirmed(request, live_services.revoke_device_credentials, device=device,
                                   done=f"{device.name}'s credentials are revoked; it needs new ones to connect.")
        return self._page(request, "confirm.html", title=f"Revoke {device.name}'s credentials",
                          question=f"Every token issued for {device.name} ({device.thing_name}) stops working and "
                                   "its live connection closes.", button="Revoke the device's credentials")

    def revoke_member_view(self, request, membership):
        membership = get_object_or_404(Membership.objects.administered_by(request.user).select_related("user"),
                                       pk=membership)
        who = membership.user.email
        if request.method == "POST":
            return self._confirmed(request, live_services.revoke_member_access, membership=membership,
                                   done=f"Everything {who} held here is revoked; they stay a member.")
        return self._page(request, "confirm.html", title=f"Revoke everything {who} holds here",
                          question=f"Every share {who} received here (and what they re-shared) is revoked and every "
                                   "token they hold here stops working. They stay a member and keep what they own.",
                          button="Revoke everything")

    def sign_out_member_view(self, request, membership):
        membership = get_object_or_404(Membership.objects.administered_by(request.user)
                                       .select_related("user", "tenant"), pk=membership)
        who = membership.user.email
        if request.method == "POST":
            return self._confirmed(request, live_services.sign_out_apps, tenant=membership.tenant,
                                   user=membership.user, done=f"Every app of {who} here is signed out.")
        return self._page(request, "confirm.html", title=f"Sign out every app of {who} here",
                          question=f"Every token {who} holds here stops working and their live connections close. "
                                   "Their shares stay: they may sign in and get new credentials.",
                          button="Sign out")

    def _confirmed(self, request, write, *, done: str, **kwargs):
        try:
            # Audited with source "admin" by AuditContextMiddleware, like every console write.
            write(actor=request.user, **kwargs)
        except (ValidationError, PermissionDenied) as error:
            self._refused(request, error)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return redirect("admin:authz_accessreceipt_changelist")
