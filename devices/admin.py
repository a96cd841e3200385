"""The admin console for tenants, people, devices, groups, shares and
invitations, scoped to the tenants the staff user administers.

The base classes (tenant scoping, writes through services while the form
validates, read-only records) are shared with authz's admin and live in
``config.console``.
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import redirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from config.console import (
    ReadOnlyInline,
    ReadOnlyTenantAdmin,
    ServiceAdminMixin,
    ServiceForm,
    TenantScopedAdmin,
    administers_any,
    error_message,
)

from . import audit, schedules, selectors, services
from .audit_actions import Action
from .errors import DomainError
from .models import (
    AuditEvent,
    Device,
    DeviceGroup,
    DeviceType,
    Invitation,
    Membership,
    Share,
    Tenant,
    User,
)
from .share_status import ShareStatus, share_status, share_status_q

# --- users and tenants -------------------------------------------------------


class UserChangeForm(ServiceForm):
    # Django's read-only rendering of the hash, with the link to the password form.
    password = auth_forms.ReadOnlyPasswordHashField(label="Password")

    class Meta:
        model = User
        fields = ["full_name", "is_staff", "is_active"]


class UserCreationForm(ServiceForm):
    password = forms.CharField(widget=forms.PasswordInput, required=False,
                               help_text="Leave empty for an account that signs in by invitation only.")

    class Meta:
        model = User
        fields = ["email", "full_name", "is_staff"]


@admin.register(User)
class UserAdmin(ServiceAdminMixin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["email", "date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["email", "password", "full_name", "is_staff", "is_active", "date_joined", "last_login"]}),
    ]
    add_fieldsets = [(None, {"fields": ["email", "password", "full_name", "is_staff"]})]
    filter_horizontal = []

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_module_permission(self, request):
        return request.user.is_superuser or administers_any(request.user)

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return False  # accounts are deactivated, never deleted: audit rows point at them

    def user_change_password(self, request, id, form_url=""):
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                audit.record(actor=request.user, action=Action.USER_PASSWORD_CHANGE, obj=User.objects.get(pk=id),
                             tenant=None)
        return response

    def perform(self, request, form, change):
        data = form.cleaned_data
        if not change:
            return services.create_user(actor=request.user, email=data["email"], password=data.get("password"),
                                        full_name=data.get("full_name", ""), is_staff=data.get("is_staff", False))
        user = User.objects.get(pk=form.instance.pk)
        if "is_active" in form.changed_data:
            services.set_user_active(actor=request.user, user=user, is_active=data["is_active"])
        if {"full_name", "is_staff"} & set(form.changed_data):
            return services.update_user(actor=request.user, user=user, full_name=data["full_name"],
                                        is_staff=data["is_staff"])
        return user


class MembershipInline(ReadOnlyInline):
    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = fields


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]

    def get_fields(self, request, obj=None):
        return ["name", "slug"] if obj is None else ["name"]

    def _tenant_id(self, obj):
        return obj.pk

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return False  # a tenant goes away by an operator's decision, not a click

    def perform(self, request, form, change):
        data = form.cleaned_data
        if change:
            return services.update_tenant(actor=request.user, tenant=self.fresh(form), name=data["name"])
        return services.create_tenant(actor=request.user, name=data["name"], slug=data["slug"])


class MembershipAddForm(ServiceForm):
    email = forms.EmailField(help_text="The email of an existing account; invite people who have none.")

    class Meta:
        model = Membership
        fields = ["tenant", "role"]


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter), "role"]
    search_fields = ["user__email", "tenant__name"]
    actions = ["sign_out_apps", "revoke_everything"]

    @admin.action(description="Sign out this person's apps here")
    def sign_out_apps(self, request, queryset):
        # Confirmed on authz's page, like the action below.
        return _one_at_a_time(self, request, queryset, "admin:authz_accessreceipt_sign_out_member")

    @admin.action(description="Revoke everything this person holds here")
    def revoke_everything(self, request, queryset):
        # An emergency action on one person, confirmed on authz's page (its
        # service is authz's, reached by URL name: devices does not import
        # authz; docs/console.md#revoke-everything-this-person-holds-here).
        return _one_at_a_time(self, request, queryset, "admin:authz_accessreceipt_revoke_member")

    def get_fields(self, request, obj=None):
        return ["tenant", "email", "role"] if obj is None else ["role"]

    def has_add_permission(self, request):
        return request.user.is_superuser  # others join by accepting an invitation

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = MembershipAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def perform(self, request, form, change):
        data = form.cleaned_data
        if change:
            return services.change_member_role(actor=request.user, membership=self.fresh(form), role=data["role"])
        user = User.objects.filter(email=data["email"].lower(), is_active=True).first()
        if user is None:
            raise ValidationError({"email": "No active account has this email; share with an invitation instead."})
        return services.add_member(actor=request.user, tenant=data["tenant"], user=user, role=data["role"])

    def remove(self, request, obj):
        services.remove_member(actor=request.user, membership=obj)


def _one_at_a_time(model_admin, request, queryset, page: str):
    """Go to `page` for the one selected object; several at once is refused."""
    chosen = list(queryset.values_list("pk", flat=True)[:2])
    if len(chosen) != 1:
        model_admin.message_user(request, "Select exactly one.", messages.ERROR)
        return None
    return redirect(page, chosen[0])


# --- catalogue, groups and devices -------------------------------------------


@admin.register(DeviceType)
class DeviceTypeAdmin(TenantScopedAdmin):
    list_display = ["name", "slug", "tenant", "capability_list"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "slug"]

    def get_fields(self, request, obj=None):
        return ["tenant", "name", "slug", "capabilities"] if obj is None else ["name", "capabilities"]

    @admin.display(description="capabilities")
    def capability_list(self, obj):
        return ", ".join(obj.capabilities)

    def perform(self, request, form, change):
        data = form.cleaned_data
        if change:
            return services.update_device_type(actor=request.user, device_type=self.fresh(form),
                                               name=data["name"], capabilities=data["capabilities"])
        return services.create_device_type(actor=request.user, tenant=data["tenant"], name=data["name"],
                                           slug=data["slug"], capabilities=data["capabilities"])

    def remove(self, request, obj):
        services.delete_device_type(actor=request.user, device_type=obj)


class ShareInline(ReadOnlyInline):
    model = Share
    fk_name = "device"
    fields = ["grantee", "level", "starts_at", "expires_at", "weekly_schedule", "can_reshare", "created_by",
              "revoked_at"]
    readonly_fields = fields
    verbose_name_plural = "shares of this device"

    @admin.display(description="hours")
    def weekly_schedule(self, obj):
        return _hours(obj)


class GroupShareInline(ShareInline):
    fk_name = "group"
    verbose_name_plural = "shares of this group"


class GroupDeviceInline(ReadOnlyInline):
    model = Device
    fields = ["name", "thing_name", "owner", "device_type"]
    readonly_fields = fields


@admin.register(DeviceGroup)
class DeviceGroupAdmin(TenantScopedAdmin):
    list_display = ["name", "owner", "tenant", "created_at"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "owner__email"]
    inlines = [GroupDeviceInline, GroupShareInline]

    def get_fields(self, request, obj=None):
        return ["tenant", "owner", "name"] if obj is None else ["name"]

    def perform(self, request, form, change):
        data = form.cleaned_data
        if change:
            return services.rename_group(actor=request.user, group=self.fresh(form), name=data["name"])
        return services.create_group(actor=request.user, tenant=data["tenant"], owner=data["owner"], name=data["name"])

    def remove(self, request, obj):
        services.delete_group(actor=request.user, group=obj)


@admin.register(Device)
class DeviceAdmin(TenantScopedAdmin):
    list_display = ["name", "thing_name", "owner", "device_type", "group", "tenant", "created_at"]
    list_filter = [
        ("tenant", admin.RelatedOnlyFieldListFilter),
        ("device_type", admin.RelatedOnlyFieldListFilter),
        ("group", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "thing_name", "owner__email"]
    list_select_related = ["owner", "device_type", "group", "tenant"]
    inlines = [ShareInline]
    actions = ["revoke_credentials", "show_live_sessions"]

    # Live access pages are authz's, reached by URL name (docs/console.md#live-access).
    @admin.action(description="Revoke the device's credentials")
    def revoke_credentials(self, request, queryset):
        return _one_at_a_time(self, request, queryset, "admin:authz_accessreceipt_revoke_device")

    @admin.action(description="Show live sessions")
    def show_live_sessions(self, request, queryset):
        return _one_at_a_time(self, request, queryset, "admin:authz_accessreceipt_device_sessions")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "owner", "name", "device_type", "thing_name", "group"]
        return ["thing_name", "tenant", "name", "owner", "group", "device_type", "access"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["thing_name", "tenant", "device_type", "access"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            form.base_fields["thing_name"].required = False
            form.base_fields["thing_name"].initial = ""
            form.base_fields["thing_name"].help_text = "Leave empty to generate a short unique name."
        return form

    @admin.display(description="effective access")
    def access(self, obj):
        rows = selectors.device_access_list(device=obj)
        return format_html(
            '<table class="effective-access">'
            "<tr><th>user</th><th>level</th><th>through</th><th>until</th><th>hours</th><th>now</th></tr>{}</table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (user.email, access.label, _through(access.share), access.expires_at or "—",
                     _hours(access.share) if access.share else "any hour",
                     "in force" if access.in_force else "outside hours")
                    for user, access in rows
                ),
            ),
        )

    def perform(self, request, form, change):
        data = form.cleaned_data
        if not change:
            return services.register_device(
                actor=request.user, tenant=data["tenant"], owner=data["owner"], name=data["name"],
                device_type=data["device_type"], thing_name=data.get("thing_name") or None, group=data.get("group"),
            )
        device = self.fresh(form)
        changed = set(form.changed_data)
        if "name" in changed:
            device = services.rename_device(actor=request.user, device=device, name=data["name"])
        if "owner" in changed:
            device = services.transfer_device(actor=request.user, device=device, new_owner=data["owner"])
        if "group" in changed and device.group_id != getattr(data["group"], "pk", None):
            if data["group"] is None:
                device = services.remove_device_from_group(actor=request.user, device=device)
            else:
                device = services.add_device_to_group(actor=request.user, group=data["group"], device=device)
        return device

    def remove(self, request, obj):
        services.delete_device(actor=request.user, device=obj)


def _through(share):
    if share is None:
        return "ownership"
    return f"group {share.group.name}" if share.group_id else "direct share"


# --- shares, invitations, audit ----------------------------------------------


def _hours(grant) -> str:
    return schedules.summary(grant.schedule) or "any hour"


def _hours_cell(grant):
    """For narrow list columns: one window a line, then the zone."""
    if grant.schedule is None:
        return "any hour"
    if isinstance(schedules.of(grant), schedules.Unreadable):
        return schedules.summary(grant.schedule)
    lines = [*schedules.to_text(grant.schedule).splitlines(), grant.schedule["timezone"]]
    # The admin's own .nowrap: "09:00-12:00" must not break at its dash.
    return format_html_join(mark_safe("<br>"), '<span class="nowrap">{}</span>', ((line,) for line in lines))


def _zone_choices():
    return [("", "—"), *((zone, zone) for zone in sorted(schedules.time_zones()))]


class ScheduleTextField(forms.CharField):
    """One window a line; compared line by line, so a browser's CRLF is no change."""

    def to_python(self, value):
        return "\n".join(line.strip() for line in super().to_python(value).splitlines() if line.strip())


class ScheduleForm(ServiceForm):
    """A grant's weekly schedule as a time zone and one window a line, turned
    into its JSON form by devices.schedules (docs/console.md#weekly-schedules)."""

    schedule_zone = forms.ChoiceField(label="Time zone", required=False, choices=_zone_choices,
                                      help_text="The clock the hours below are read on.")
    schedule = ScheduleTextField(
        label="Weekly hours", required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text="One window a line: days, then hours, e.g. <code>tue,thu 09:00-12:00</code> or "
                  "<code>mon-fri 22:00-06:00</code> (an end before the start is the next day). "
                  "Empty: any hour.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = self.instance.schedule
        self.initial["schedule_zone"] = stored["timezone"] if stored else ""
        self.initial["schedule"] = schedules.to_text(stored)

    def clean(self):
        data = super().clean()
        if "schedule_zone" not in self.errors:
            try:
                data["schedule"] = schedules.parse_text(data.get("schedule", ""), zone=data.get("schedule_zone", ""))
            except DomainError as error:
                self.add_error(None, error)  # on the field it names, "schedule"
        return data

    def schedule_changed(self) -> bool:
        return bool({"schedule", "schedule_zone"} & set(self.changed_data))


class ShareStatusFilter(admin.SimpleListFilter):
    """The API's statuses (devices/share_status.py), so both lists agree."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return ShareStatus.choices

    def queryset(self, request, queryset):
        return queryset.filter(share_status_q(self.value())) if self.value() in ShareStatus.values else queryset


@admin.register(Share)
class ShareAdmin(TenantScopedAdmin):
    list_display = ["__str__", "grantee", "level", "target_display", "starts_at", "expires_at", "hours",
                    "can_reshare", "status"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter), ShareStatusFilter, "level", "can_reshare"]
    search_fields = ["grantee__email", "device__name", "device__thing_name", "group__name"]
    list_select_related = ["grantee", "device", "group", "tenant"]
    actions = ["revoke_selected"]

    def get_fields(self, request, obj=None):
        hours = ["weekly_schedule"] if obj is not None and obj.revoked_at else ["schedule_zone", "schedule"]
        if obj is None:
            return ["device", "group", "grantee", "level", "starts_at", "expires_at", *hours, "can_reshare"]
        return ["tenant", "device", "group", "grantee", "level", "starts_at", "expires_at", *hours, "can_reshare",
                "parent", "created_by", "created_at", "revoked_at", "revoked_by"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fixed = ["tenant", "device", "group", "grantee", "parent",
                 "created_by", "created_at", "revoked_at", "revoked_by"]
        return fixed + (["level", "starts_at", "expires_at", "weekly_schedule", "can_reshare"] if obj.revoked_at
                        else [])

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None or not obj.revoked_at:
            kwargs["form"] = ScheduleForm
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # shares are revoked, not deleted, so history stays

    @admin.display(description="target")
    def target_display(self, obj):
        return f"device {obj.device.name}" if obj.device_id else f"group {obj.group.name}"

    @admin.display(description="status")
    def status(self, obj):
        return share_status(obj).label

    @admin.display(description="hours")
    def hours(self, obj):
        return _hours_cell(obj)

    @admin.display(description="weekly hours")
    def weekly_schedule(self, obj):
        return _hours(obj)

    def perform(self, request, form, change):
        data = form.cleaned_data
        if change:
            # Only what the form changed, so an untouched past start or expiry is not re-validated.
            changed = {name: data[name] for name in form.changed_data if name not in ("schedule", "schedule_zone")}
            if form.schedule_changed():
                changed["schedule"] = data["schedule"]
            return services.update_share(actor=request.user, share=self.fresh(form), **changed)
        return services.create_share(
            actor=request.user, device=data.get("device"), group=data.get("group"), grantee=data["grantee"],
            level=data["level"], starts_at=data.get("starts_at"), expires_at=data.get("expires_at"),
            can_reshare=data.get("can_reshare", False), schedule=data.get("schedule"),
        )

    @admin.action(description="Revoke selected shares (and their re-shares)")
    def revoke_selected(self, request, queryset):
        try:
            revoked = services.revoke_shares(actor=request.user, shares=list(queryset))
        except (ValidationError, PermissionDenied) as error:
            self.message_user(request, f"Nothing revoked: {error_message(error)}", messages.ERROR)
            return
        self.message_user(request, f"Revoked {len(revoked)} share(s), re-shares included.", messages.SUCCESS)


@admin.register(Invitation)
class InvitationAdmin(TenantScopedAdmin):
    list_display = ["email", "target_display", "level", "hours", "status", "invited_by", "valid_until"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter), "status"]
    search_fields = ["email"]
    actions = ["cancel_selected"]
    target_display = ShareAdmin.target_display
    hours = ShareAdmin.hours
    weekly_schedule = ShareAdmin.weekly_schedule

    def get_fields(self, request, obj=None):
        fields = ["device", "group", "email", "level", "starts_at", "expires_at"]
        if obj is None:
            return [*fields, "schedule_zone", "schedule", "can_reshare"]
        return ["tenant", *fields, "weekly_schedule", "can_reshare", "status", "invited_by", "valid_until",
                "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ScheduleForm
        return super().get_form(request, obj, change=change, **kwargs)

    def has_change_permission(self, request, obj=None):
        return False  # a sent invitation is answered or cancelled, not edited

    def has_delete_permission(self, request, obj=None):
        return False

    def perform(self, request, form, change):
        data = form.cleaned_data
        return services.create_invitation(
            actor=request.user, email=data["email"], device=data.get("device"), group=data.get("group"),
            level=data["level"], starts_at=data.get("starts_at"), expires_at=data.get("expires_at"),
            can_reshare=data.get("can_reshare", False), schedule=data.get("schedule"),
        )

    @admin.action(description="Cancel selected invitations")
    def cancel_selected(self, request, queryset):
        try:
            with transaction.atomic():
                for invitation in queryset.filter(status=Invitation.Status.PENDING):
                    services.cancel_invitation(actor=request.user, invitation=invitation)
        except (ValidationError, PermissionDenied) as error:
            self.message_user(request, f"Nothing cancelled: {error_message(error)}", messages.ERROR)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyTenantAdmin):
    list_display = ["created_at", "actor_email", "action", "object_type", "object_repr", "source", "ip_address"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter), "action", "source"]
    search_fields = ["actor_email", "object_repr", "action"]
    date_hierarchy = "created_at"

