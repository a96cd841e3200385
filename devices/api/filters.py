"""Query-string filters for the list endpoints (django-filter)."""
from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from drf_spectacular.drainage import set_override

from config.api.ids import MAX_ID
from devices.models import AuditEvent, Device, DeviceGroup, Invitation, Level, Share
from devices.share_status import ACTIVE_STATUSES, ShareStatus, share_status_q
from lambda_bridge import vocabulary

LEVEL_CHOICES = [(name, name) for name in vocabulary.LEVELS]
SHARE_LEVEL_CHOICES = [(name, name) for name in vocabulary.SHARE_LEVELS]
# The share list's status filter takes a share's status and these two.
ACTIVE, ALL = "active", "all"


class IdFilter(django_filters.NumberFilter):
    """An object id: a whole number an id column can hold, else 400.

    NumberFilter takes any decimal (1e26, -1.06e+251), which SQLite cannot even
    compare with an integer column (OverflowError, a 500).
    """

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=MAX_ID, **kwargs)
        # The schema says so too (else "number"); per filter, to keep its help text.
        help_text = self.extra.get("help_text")
        set_override(self, "field", {"type": "integer", "minimum": 1, "maximum": MAX_ID,
                                     **({"description": help_text} if help_text else {})})


def _by_level(queryset, name, value):
    return queryset.filter(access_level=Level[value.upper()])


class DeviceFilter(django_filters.FilterSet):
    # A plain number: a choice among all groups would tell other tenants' ids from missing ones.
    group = IdFilter(field_name="group_id", help_text="Devices in this group (id).")
    type = django_filters.CharFilter(field_name="device_type__slug", help_text="Device type slug.")
    level = django_filters.ChoiceFilter(choices=LEVEL_CHOICES, method=_by_level, help_text="Your level on the device.")
    search = django_filters.CharFilter(method="by_text", help_text="Part of the name or thing name.")

    class Meta:
        model = Device
        fields = ["group", "type", "level", "search"]

    def by_text(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(thing_name__icontains=value))


class GroupFilter(django_filters.FilterSet):
    level = django_filters.ChoiceFilter(choices=LEVEL_CHOICES, method=_by_level, help_text="Your level on the group.")

    class Meta:
        model = DeviceGroup
        fields = ["level"]


class ShareFilter(django_filters.FilterSet):
    """Without `status`, only active shares: live or scheduled."""

    status = django_filters.ChoiceFilter(
        choices=[(ACTIVE, ACTIVE), *ShareStatus.choices, (ALL, ALL)], method="by_status", empty_label=None,
        help_text="active (default): live or scheduled; a share's status (live, scheduled, expired, revoked); all.",
    )
    level = django_filters.ChoiceFilter(choices=SHARE_LEVEL_CHOICES, method="by_level")
    device = IdFilter(field_name="device_id")
    group = IdFilter(field_name="group_id")

    class Meta:
        model = Share
        fields = ["status", "level", "device", "group"]

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and not data.get("status"):
            data = data.copy()
            data["status"] = ACTIVE
        super().__init__(data, *args, **kwargs)

    def by_status(self, queryset, name, value):
        if value == ALL:
            return queryset
        return queryset.filter(share_status_q(*(ACTIVE_STATUSES if value == ACTIVE else [value])))

    def by_level(self, queryset, name, value):
        return queryset.filter(level=Level[value.upper()])


class InvitationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Invitation.Status.choices)

    class Meta:
        model = Invitation
        fields = ["status"]


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(help_text="Exact action, e.g. share.create.")
    since = django_filters.IsoDateTimeFilter(method="by_since", help_text="Events at or after this time (ISO 8601).")

    class Meta:
        model = AuditEvent
        fields = ["action", "since"]

    def by_since(self, queryset, name, value):
        # Python accepts offsets PostgreSQL refuses (beyond ±15:59): compare in UTC.
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValidationError({"since": "This time is out of range."}) from None
        return queryset.filter(created_at__gte=value)
