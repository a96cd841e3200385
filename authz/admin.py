from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import CharField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from config.console import ReadOnlyAdminMixin, ReadOnlyTenantAdmin
from devices.models import Device, User

from .models import IssuedCredential, PrincipalSync, SigningKey
from .snapshots import outbox
from .tokens import credentials, rotation


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

    list_display = ["slot", "kid", "state", "bits", "age", "next_step", "created_at", "published_at",
                    "activated_at", "retiring_at", "retired_at"]
    list_filter = ["state", "slot"]
    search_fields = ["kid"]
    fields = ["slot", "kid", "state", "bits", "public_pem", "created_at", "staged_at", "published_at",
              "activated_at", "retiring_at", "retired_at"]
    readonly_fields = fields

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def get_queryset(self, request):
        return super().get_queryset(request).defer("private_key_encrypted")

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET" and self.has_view_permission(request):
            st = rotation.status()
            sync = "published" if st.in_sync else "NOT YET PUBLISHED"
            self.message_user(request, f"Next step: {st.next.describe(st.now)}. Key set v{st.desired_version} "
                                       f"{sync}{': ' + st.last_error if st.last_error else ''}.", messages.INFO)
        return super().changelist_view(request, extra_context)

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
    """What a device needs to connect, under the API's names (AWS IoT SDK parameters)."""
    return [
        ("clientId", creds.client_id), ("endpoint", creds.endpoint), ("authorizerName", creds.authorizer_name),
        ("tokenKeyName", creds.token_key_name), ("expiresAt", creds.expires_at.isoformat().replace("+00:00", "Z")),
        ("token", creds.token), ("tokenSignature", creds.token_signature), ("mqttUsername", creds.mqtt_username),
        ("wssUrl", creds.wss_url),
    ]


class IssueDeviceCredentialsForm(forms.Form):
    device = forms.ModelChoiceField(queryset=Device.objects.none())
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

    list_display = ["client_id", "kind", "who", "tenant", "short_kid", "scope", "issued_by", "issued_at",
                    "expires_at", "live"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter), "kind", LiveFilter]
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
        }
        # admin_view() marks every admin page never-cache (no-store), which this
        # page relies on: it may carry a bearer token.
        return TemplateResponse(request, "admin/authz/issuedcredential/issue_device.html", context)

    def _issue(self, request, form) -> credentials.Credentials | None:
        data = form.cleaned_data
        try:
            # Audited with source "admin" by AuditContextMiddleware, like every console write.
            return credentials.issue_device_credentials(actor=request.user, device=data["device"],
                                                        lifetime=data.get("lifetime"))
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
