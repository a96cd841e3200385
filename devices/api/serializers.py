"""Request and response shapes. Serializers validate and render only; views
hand validated data to ``devices.services``."""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from devices import schedules
from devices import selectors as domain
from devices.models import (
    AuditEvent,
    Device,
    DeviceGroup,
    DeviceType,
    Invitation,
    Level,
    Membership,
    Share,
    Tenant,
    User,
    validate_thing_name,
)
from devices.share_status import ShareStatus, share_status
from lambda_bridge import vocabulary

from . import selectors

SHARE_LEVELS = list(vocabulary.SHARE_LEVELS)
ACCESS_LEVELS = list(vocabulary.LEVELS)


class LevelField(serializers.ChoiceField):
    """Levels travel as their names: view, control, manage (and owner, read-only)."""

    def __init__(self, *, with_owner: bool = False, **kwargs):
        super().__init__(choices=ACCESS_LEVELS if with_owner else SHARE_LEVELS, **kwargs)

    def to_internal_value(self, data):
        return Level[super().to_internal_value(data).upper()]

    def to_representation(self, value):
        return None if value is None else Level(value).label


class ScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """An id chosen among what the caller can see in the path's tenant;
    anything else reads as "does not exist"."""

    def __init__(self, query, **kwargs):
        self.query = query
        super().__init__(**kwargs)

    def get_queryset(self):
        view = self.context["view"]
        return self.query(user=view.request.user, tenant=view.tenant)


# --- auth and people -----------------------------------------------------------


class LoginSerializer(TokenObtainPairSerializer):
    def validate(self, attrs):
        # Accounts are stored lower-case; people type their address however they like.
        attrs[self.username_field] = attrs[self.username_field].strip().lower()
        return super().validate(attrs)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class UserBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "full_name"]


class TenantBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["slug", "name"]


class MembershipSerializer(serializers.ModelSerializer):
    tenant = TenantBriefSerializer()

    class Meta:
        model = Membership
        fields = ["tenant", "role", "created_at"]


class MeSerializer(serializers.ModelSerializer):
    memberships = MembershipSerializer(many=True)

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "date_joined", "memberships"]


class TenantSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role here; null for a superuser who is not a member.")

    class Meta:
        model = Tenant
        fields = ["slug", "name", "role"]

    @extend_schema_field(serializers.ChoiceField(choices=Membership.Role.values, allow_null=True))
    def get_role(self, tenant) -> str | None:
        return self.context.get("roles", {}).get(tenant.pk)


# --- devices and groups ---------------------------------------------------------


class DeviceTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeviceType
        fields = ["id", "slug", "name", "capabilities"]


class DeviceSerializer(serializers.ModelSerializer):
    device_type = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    owner = UserBriefSerializer(read_only=True)
    level = LevelField(source="access_level", with_owner=True, read_only=True, allow_null=True,
                       help_text="Your level on the device; null when you see it only as a tenant admin.")

    class Meta:
        model = Device
        fields = ["id", "thing_name", "name", "device_type", "group", "owner", "level", "created_at"]
        read_only_fields = fields


class SlugField(serializers.SlugRelatedField):
    """A slug lookup that turns away what PostgreSQL cannot even compare (NUL)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", "\\x00"))
        return super().to_internal_value(data)


class DeviceCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    device_type = SlugField(
        slug_field="slug", queryset=DeviceType.objects.none(), help_text="A device type slug of this tenant."
    )
    thing_name = serializers.CharField(max_length=128, required=False, validators=[validate_thing_name],
                                       help_text="The AWS IoT thing name; generated when left out.")
    group = ScopedPrimaryKeyField(domain.groups_for, queryset=DeviceGroup.objects.none(), required=False,
                                  allow_null=True)
    owner = serializers.EmailField(required=False, help_text="Tenant admins only: register for another member.")

    def get_fields(self):
        fields = super().get_fields()
        view = self.context.get("view")
        if view is not None and hasattr(view, "tenant"):
            fields["device_type"].queryset = selectors.device_types_for(user=view.request.user, tenant=view.tenant)
        return fields


class DeviceRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class TransferSerializer(serializers.Serializer):
    new_owner = serializers.EmailField(help_text="The email of a member of this tenant.")
    keep_shares = serializers.BooleanField(default=False, help_text="Keep the device's direct shares.")


class GroupSerializer(serializers.ModelSerializer):
    owner = UserBriefSerializer(read_only=True)
    level = LevelField(source="access_level", with_owner=True, read_only=True, allow_null=True,
                       help_text="Your level on the group; null when you see it only as a tenant admin.")

    class Meta:
        model = DeviceGroup
        fields = ["id", "name", "owner", "level", "created_at"]
        read_only_fields = ["id", "owner", "level", "created_at"]


class GroupDeviceSerializer(serializers.Serializer):
    device = ScopedPrimaryKeyField(domain.devices_for, queryset=Device.objects.none())


# --- shares, invitations, access, audit ------------------------------------------


def _target_name(obj) -> str:
    return obj.device.name if obj.device_id else obj.group.name


class ScheduleWindowSerializer(serializers.Serializer):
    days = serializers.ListField(child=serializers.ChoiceField(choices=list(schedules.DAYS)), min_length=1,
                                 max_length=7, help_text="The days the window starts on.")
    start = serializers.RegexField(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", help_text="Local time, HH:MM.")
    end = serializers.RegexField(r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
                                 help_text="Local time, HH:MM; before `start`: the next day; 24:00: midnight.")


class ScheduleSerializer(serializers.Serializer):
    """Weekly hours in one time zone (docs/sharing.md#weekly-schedules).
    Only describes the field in the schema: `ScheduleField` hands what it is
    sent to the services, whose check answers with a code."""

    timezone = serializers.CharField(help_text="An IANA time zone name, such as Europe/Brussels.")
    windows = serializers.ListField(child=ScheduleWindowSerializer(), min_length=1, max_length=schedules.MAX_WINDOWS)


@extend_schema_field(ScheduleSerializer)
class ScheduleField(serializers.JSONField):
    """A weekly schedule in its JSON form, or null for any hour."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Weekly hours the grant is limited to, in one time zone; null: any hour.")
        super().__init__(allow_null=True, **kwargs)


class ShareSerializer(serializers.ModelSerializer):
    grantee = UserBriefSerializer()
    created_by = UserBriefSerializer()
    level = LevelField()
    target_name = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    schedule = ScheduleField(read_only=True)

    class Meta:
        model = Share
        fields = ["id", "device", "group", "target_name", "grantee", "level", "starts_at", "expires_at",
                  "schedule", "can_reshare", "parent", "created_by", "created_at", "updated_at", "revoked_at",
                  "status"]
        read_only_fields = fields

    def get_target_name(self, share) -> str:
        return _target_name(share)

    @extend_schema_field(serializers.ChoiceField(choices=ShareStatus.values))
    def get_status(self, share) -> str:
        return share_status(share).value


class ShareTermsSerializer(serializers.Serializer):
    level = LevelField()
    starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    can_reshare = serializers.BooleanField(required=False, default=False,
                                           help_text="Manage shares only: may share onwards within this share.")
    schedule = ScheduleField(required=False, default=None)


class ShareCreateSerializer(ShareTermsSerializer):
    grantee = serializers.EmailField(
        help_text="A member of this tenant receives the share at once; any other address gets an invitation."
    )


class ShareUpdateSerializer(serializers.Serializer):
    """Only the fields sent change; null clears a start, an expiry or a schedule."""

    level = LevelField(required=False)
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    schedule = ScheduleField(required=False)
    can_reshare = serializers.BooleanField(required=False)


# The receipt is authz's (docs/api.md#receipts), defined once there as the
# `Receipt` component; devices names it without importing authz.
@extend_schema_field({"allOf": [{"$ref": "#/components/schemas/Receipt"}], "nullable": True,
                      "description": "What the write did to live connections; null when nothing narrowed."})
class ReceiptField(serializers.DictField):
    def __init__(self, **kwargs):
        super().__init__(read_only=True, allow_null=True, **kwargs)


class RevokedSerializer(serializers.Serializer):
    revoked = serializers.ListField(child=serializers.IntegerField(),
                                    help_text="Ids of every share revoked, re-shares included.")
    receipt = ReceiptField()


class TransferredSerializer(DeviceSerializer):
    receipt = ReceiptField()

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "receipt"]
        read_only_fields = fields


class InvitationSerializer(serializers.ModelSerializer):
    tenant = TenantBriefSerializer()
    target_name = serializers.SerializerMethodField()
    level = LevelField()
    invited_by = serializers.EmailField(source="invited_by.email")
    schedule = ScheduleField(read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "tenant", "email", "device", "group", "target_name", "level", "starts_at", "expires_at",
                  "schedule", "can_reshare", "invited_by", "status", "valid_until", "created_at", "responded_at",
                  "share"]
        read_only_fields = fields

    def get_target_name(self, invitation) -> str:
        return _target_name(invitation)


class AccessFieldsSerializer(serializers.Serializer):
    level = LevelField(with_owner=True, allow_null=True, help_text="Null: no access of your own.")
    through = serializers.ChoiceField(
        choices=["ownership", "device_share", "group_share", "tenant_admin"], allow_null=True,
        help_text="What gives the level; tenant_admin when you only administer the tenant.",
    )
    share = serializers.IntegerField(allow_null=True, help_text="The share that grants the level.")
    group = serializers.IntegerField(allow_null=True, help_text="The group whose share grants it.")
    starts_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    schedule = ScheduleField(help_text="The weekly hours of the share that grants the level; null: any hour.")


class AccessSerializer(AccessFieldsSerializer):
    in_force = serializers.BooleanField(help_text="Whether you have access of your own at that instant.")
    next_change = serializers.DateTimeField(
        allow_null=True, help_text="When your level next changes (a share starts or ends, a window opens or "
        "closes); null when it never does (docs/sharing.md#when-access-next-changes).")


class AccessEntrySerializer(AccessFieldsSerializer):
    user = UserBriefSerializer()
    in_force = serializers.BooleanField(help_text="Whether this person's level is in force now; false: "
                                        "outside the hours of their schedule (docs/api.md#weekly-schedules).")


def access_row(access, *, admin: bool = False) -> dict:
    """An ``selectors.Access`` (or None) as the AccessSerializer's input."""
    share = getattr(access, "share", None)
    if access is None:
        through = "tenant_admin" if admin else None
    elif share is None:
        through = "ownership"
    else:
        through = "group_share" if share.group_id else "device_share"
    return {
        "level": access.level if access else None,
        "through": through,
        "share": share.pk if share else None,
        "group": share.group_id if share else None,
        "starts_at": share.starts_at if share else None,
        "expires_at": access.expires_at if access else None,
        "schedule": schedules.to_json(access.schedule) if access else None,
    }


class AuditEventSerializer(serializers.ModelSerializer):
    # A plain string in the schema, as before the registry gave the model
    # choices: a client must not break when an action is added.
    action = serializers.CharField(read_only=True)
    changes = serializers.JSONField()

    class Meta:
        model = AuditEvent
        # The client IP stays in the console: sharees should not learn each other's addresses.
        fields = ["id", "created_at", "actor_email", "action", "object_type", "object_id", "object_repr",
                  "changes", "source"]
        read_only_fields = fields

