from django.db import models
from django.db.models import F, Q

from devices.models import Tenant, TenantScopedQuerySet
from lambda_bridge import snapshot


class PrincipalSyncQuerySet(TenantScopedQuerySet):
    def lagging(self):
        return self.filter(pushed_version__lt=F("desired_version"))

    def due(self, now):
        """Lagging, and past any backoff or reconciler lease."""
        return self.lagging().filter(Q(retry_after__isnull=True) | Q(retry_after__lte=now))


class PrincipalSync(models.Model):
    """The outbox row of one principal's snapshot: the version the database
    wants in DynamoDB and the version known to be there.

    Versions are hybrid clocks, max(previous + 1, now in µs): they only grow,
    and after a database restore new changes still outrank what DynamoDB holds.
    """

    class Kind(models.TextChoices):
        USER = snapshot.USER, "user"
        DEVICE = snapshot.DEVICE, "device"

    # PROTECT: a tenant's rows (and tombstones) outlive nothing but the tenant.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=1, choices=Kind.choices)
    # A user's id or a device's thing name: both survive the thing they name,
    # so a deleted device or removed user still gets its tombstone pushed.
    principal = models.CharField(max_length=128)
    desired_version = models.BigIntegerField(default=0)
    pushed_version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    # When a failed push may be tried again (exponential backoff with jitter).
    retry_after = models.DateTimeField(null=True, blank=True)

    objects = PrincipalSyncQuerySet.as_manager()

    class Meta:
        verbose_name = "snapshot sync"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "principal"], name="sync_one_row_per_principal"),
        ]
        indexes = [
            models.Index(fields=["retry_after"], condition=Q(pushed_version__lt=F("desired_version")),
                         name="sync_lagging"),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        return snapshot.item_key(self.kind, self.tenant_id, self.principal)

    @property
    def in_sync(self) -> bool:
        return self.pushed_version >= self.desired_version
