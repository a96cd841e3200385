"""Tenants, people, devices and the grants between them (docs/domain.md).

Models hold structure and database invariants only. Every write goes through
``devices.services`` and every read that depends on who is asking goes
through the ``visible_to`` querysets below.
"""
import re
import secrets

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from lambda_bridge import vocabulary

from .audit_actions import Action
from .share_status import ShareStatus, share_status, share_status_q

# Anchored: RegexValidator and PostgreSQL's `~` search rather than match whole.
# `\Z`, not `$`: in Python (the validator, and SQLite's REGEXP) `$` also
# matches before a final newline; both Python and PostgreSQL read `\Z` as the
# very end of the string.
THING_NAME_RE = re.compile(rf"^{vocabulary.THING_NAME}\Z")
validate_thing_name = RegexValidator(
    THING_NAME_RE,
    "Thing name must be 1-128 characters of letters, digits, ':', '_' or '-'.",
)


def generate_thing_name() -> str:
    # 12 base-32 characters = 60 bits: short enough to type, wide enough that
    # collisions across one AWS account are not a practical concern.
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(12))


def _stored(name: str) -> tuple[int, str]:
    # Ten times the snapshot's code: the values the database has held since 0001_initial.
    return vocabulary.LEVEL_CODES[name] * 10, name


class Level(models.IntegerChoices):
    """Access levels, ordered (lambda_bridge/vocabulary.py); OWNER is never stored on a share."""

    VIEW = _stored(vocabulary.VIEW)
    CONTROL = _stored(vocabulary.CONTROL)
    MANAGE = _stored(vocabulary.MANAGE)
    OWNER = _stored(vocabulary.OWNER)

    @property
    def code(self) -> int:
        """The level's code in a permission snapshot."""
        return vocabulary.LEVEL_CODES[self.label]


SHARE_LEVELS = [(Level[name.upper()].value, name) for name in vocabulary.SHARE_LEVELS]
ADMIN_ROLES = ("owner", "admin")


# --- people -----------------------------------------------------------------


class UserQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Yourself, and the members of the tenants you administer."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        administered = Membership.objects.filter(user=user, role__in=ADMIN_ROLES).values("tenant_id")
        members = Membership.objects.filter(tenant__in=administered).values("user_id")
        return self.filter(Q(pk=user.pk) | Q(pk__in=members))

    administered_by = visible_to


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):
    use_in_migrations = True

    def _create(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False, help_text="May log into the admin console.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs):
        self.email = (self.email or "").lower()
        super().save(*args, **kwargs)


class TenantQuerySet(models.QuerySet):
    def visible_to(self, user):
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(pk__in=member_tenants(user))

    def administered_by(self, user):
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(pk__in=Membership.objects.filter(user=user, role__in=ADMIN_ROLES).values("tenant_id"))


class Tenant(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# --- visibility -------------------------------------------------------------
#
# Every rule is a filter on the row's own columns, to-one relations and
# `pk__in`/`__in` subqueries, never a join along a to-many relation, so no row
# can match twice and no rule needs DISTINCT. DISTINCT would make PostgreSQL
# compute every visible row, annotations included, before it could drop
# duplicates, order and cut out the one page a list shows.


def member_tenants(user):
    """Ids of the tenants `user` belongs to (a subquery)."""
    return Membership.objects.filter(user=user).values("tenant_id")


def live_share_q(prefix: str = "", now=None) -> Q:
    """Shares that grant something right now: live ones whose grantee's account is active."""
    return share_status_q(ShareStatus.LIVE, prefix=prefix, now=now) & Q(**{f"{prefix}grantee__is_active": True})


class TenantScopedQuerySet(models.QuerySet):
    """Deny by default: superusers see all, tenant admins their tenants."""

    def _admin_q(self, user) -> Q:
        return Q(tenant__in=Tenant.objects.administered_by(user))

    def _personal_q(self, user) -> Q:
        return Q(pk__in=[])

    def visible_to(self, user):
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(self._admin_q(user) | self._personal_q(user))

    def administered_by(self, user):
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(self._admin_q(user))


class MembershipQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        return Q(user=user)



class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "owner"
        ADMIN = "admin", "admin"
        MEMBER = "member", "member"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "user"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user_per_tenant"),
            models.CheckConstraint(
                condition=Q(role__in=["owner", "admin", "member"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"



class DeviceTypeQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        # The product catalogue is readable by every member of the tenant.
        return Q(tenant__in=member_tenants(user))


class DeviceType(models.Model):
    class Capability(models.TextChoices):
        TELEMETRY = "telemetry", "telemetry"
        COMMANDS = "commands", "commands"
        SHADOW = "shadow", "shadow"
        NAMED_SHADOWS = "named_shadows", "named shadows"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="device_types")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=64)
    capabilities = models.JSONField(default=list, blank=True)

    objects = DeviceTypeQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="devicetype_unique_slug_per_tenant")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        allowed = set(self.Capability.values)
        if not isinstance(self.capabilities, list) or not set(self.capabilities) <= allowed:
            raise ValidationError({"capabilities": f"Capabilities must be a list drawn from {sorted(allowed)}."})


class DeviceGroupQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        shared = Share.objects.filter(live_share_q(), grantee=user, group__isnull=False)
        return Q(owner=user) | Q(pk__in=shared.values("group_id"))


class DeviceGroup(models.Model):
    """A home or site: sharing it shares every device in it, now and later."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="groups")
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="device_groups")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DeviceGroupQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "owner", "name"], name="group_unique_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name


class DeviceQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        live = Share.objects.filter(live_share_q(), grantee=user)
        return (
            Q(owner=user)
            | Q(pk__in=live.filter(device__isnull=False).values("device_id"))
            | Q(group__in=live.filter(group__isnull=False).values("group_id"))
        )


class Device(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="devices")
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="owned_devices")
    thing_name = models.CharField(
        max_length=128, unique=True, default=generate_thing_name, validators=[validate_thing_name],
        help_text="AWS IoT thing name; fixed once registered.",
    )
    name = models.CharField(max_length=100)
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="devices")
    group = models.ForeignKey(
        DeviceGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(thing_name__regex=THING_NAME_RE.pattern), name="device_thing_name_valid"
            ),
        ]
        # A tenant's devices in list order: a page is read off the index
        # instead of sorting every device the caller sees (all of them for an admin).
        indexes = [models.Index(fields=["tenant", "name", "id"], name="device_tenant_name_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.thing_name})"

    @classmethod
    def from_db(cls, db, field_names, values, **kwargs):
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._stored_thing_name = instance.__dict__.get("thing_name")
        return instance

    def save(self, *args, **kwargs):
        # The thing name is the device's identity in AWS IoT (topics, policies,
        # snapshots); changing it would silently orphan all of them.
        stored = getattr(self, "_stored_thing_name", None)
        if stored is not None and stored != self.thing_name:
            raise ValidationError({"thing_name": "The thing name of a registered device cannot change."})
        super().save(*args, **kwargs)
        self._stored_thing_name = self.thing_name


class ShareQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        # The shares one received, every share on what one owns, and one's own
        # re-shares; only while still a member of the tenant. A former owner
        # (after a transfer) no longer sees the shares they once made.
        return (
            Q(grantee=user) | Q(device__owner=user) | Q(group__owner=user) | Q(created_by=user, parent__grantee=user)
        ) & Q(tenant__in=member_tenants(user))

    def live(self, now=None):
        return self.filter(live_share_q(now=now))


class RetiredThingName(models.Model):
    """The thing name of a deleted device, never given out again. AWS IoT keeps
    a thing's shadow and retained messages by name for the whole account, and a
    device token names its thing: a reused name would inherit all three."""

    thing_name = models.CharField(max_length=128, primary_key=True)
    retired_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.thing_name


class GrantTermsModel(models.Model):
    """What a grant gives, the same for a share and an invitation to one
    (``devices.services.terms.GrantTerms`` checks them)."""

    level = models.PositiveSmallIntegerField(choices=SHARE_LEVELS)
    starts_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    can_reshare = models.BooleanField(default=False)
    # Weekly windows in a time zone, on top of the start and expiry; null: at
    # any hour. The JSON form of devices/schedules.py, checked by its parse().
    schedule = models.JSONField(null=True, blank=True)

    class Meta:
        abstract = True
        # "%(class)s" becomes share or invitation: the constraint names predate this class.
        constraints = [
            models.CheckConstraint(
                condition=Q(level__in=[value for value, _label in SHARE_LEVELS]), name="%(class)s_level_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(starts_at__isnull=True) | Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("starts_at"))
                ),
                name="%(class)s_window_ordered",
            ),
            models.CheckConstraint(
                condition=Q(can_reshare=False) | Q(level=Level.MANAGE), name="%(class)s_reshare_needs_manage"
            ),
        ]


class Share(GrantTermsModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="shares")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, related_name="shares")
    group = models.ForeignKey(
        DeviceGroup, on_delete=models.CASCADE, null=True, blank=True, related_name="shares"
    )
    grantee = models.ForeignKey(User, on_delete=models.CASCADE, related_name="received_shares")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="reshares",
        help_text="The share this one was re-shared from; revoking it revokes this one.",
    )
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="created_shares")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="revoked_shares"
    )

    objects = ShareQuerySet.as_manager()

    class Meta(GrantTermsModel.Meta):
        ordering = ["-created_at", "-id"]
        constraints = [
            *GrantTermsModel.Meta.constraints,
            models.CheckConstraint(
                condition=Q(device__isnull=False, group__isnull=True) | Q(device__isnull=True, group__isnull=False),
                name="share_exactly_one_target",
            ),
            models.CheckConstraint(condition=~Q(grantee=models.F("created_by")), name="share_not_to_self"),
            models.UniqueConstraint(
                fields=["device", "grantee"], condition=Q(revoked_at__isnull=True, device__isnull=False),
                name="share_one_live_per_device_grantee",
            ),
            models.UniqueConstraint(
                fields=["group", "grantee"], condition=Q(revoked_at__isnull=True, group__isnull=False),
                name="share_one_live_per_group_grantee",
            ),
        ]
        indexes = [models.Index(fields=["grantee", "revoked_at"], name="share_grantee_live_idx")]

    def __str__(self) -> str:
        return f"{self.get_level_display()} on {self.target} to {self.grantee}"

    @property
    def target(self):
        return self.device if self.device_id else self.group

    def is_live(self, now=None) -> bool:
        """Not revoked and inside its window. Unlike ``live_share_q`` this does
        not look at the grantee's account, which would cost a query."""
        return share_status(self, now=now) == ShareStatus.LIVE


class InvitationQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        # The addressee is not a member yet; the sender only while still one.
        return Q(email__iexact=user.email) | Q(invited_by=user, tenant__in=member_tenants(user))


class Invitation(GrantTermsModel):
    """A share offered to an email address; it becomes a Share on acceptance."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        DECLINED = "declined", "declined"
        CANCELLED = "cancelled", "cancelled"
        LAPSED = "lapsed", "lapsed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, related_name="invitations")
    group = models.ForeignKey(
        DeviceGroup, on_delete=models.CASCADE, null=True, blank=True, related_name="invitations"
    )
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="sent_invitations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    valid_until = models.DateTimeField(help_text="The invitation itself lapses after this time.")
    share = models.ForeignKey(Share, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    responded_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta(GrantTermsModel.Meta):
        ordering = ["-created_at", "-id"]
        constraints = [
            *GrantTermsModel.Meta.constraints,
            models.CheckConstraint(
                condition=Q(device__isnull=False, group__isnull=True) | Q(device__isnull=True, group__isnull=False),
                name="invitation_exactly_one_target",
            ),
            models.UniqueConstraint(
                fields=["tenant", "email", "device"], condition=Q(status="pending", device__isnull=False),
                name="invitation_one_pending_per_device_email",
            ),
            models.UniqueConstraint(
                fields=["tenant", "email", "group"], condition=Q(status="pending", group__isnull=False),
                name="invitation_one_pending_per_group_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.device or self.group} ({self.status})"

    @property
    def target(self):
        return self.device if self.device_id else self.group


class AuditEventQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user):
        return Q(actor=user)


class AuditEvent(models.Model):
    """Append-only record of who did what to which object, when, from where.

    Object references are plain ids plus a text rendering, so the record
    outlives the object it describes.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64, db_index=True, choices=Action.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    device_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20, blank=True, help_text="admin, api, command, …")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_email or 'system'} {self.action} {self.object_repr}"
