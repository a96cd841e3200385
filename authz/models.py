from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from devices.models import Tenant, TenantScopedQuerySet
from lambda_bridge import keys, snapshot, vocabulary

from .versioned_outbox import VersionedOutbox, VersionedOutboxQuerySet

CREDENTIAL_CHOICES = [(kind, kind) for kind in vocabulary.CREDENTIAL_KINDS]


class PrincipalKind(models.TextChoices):
    USER = snapshot.USER, "user"
    DEVICE = snapshot.DEVICE, "device"


class OfPrincipal(models.Model):
    """A row about one principal of one tenant, named as its snapshot is."""

    # PROTECT: a tenant's rows (and tombstones) outlive nothing but the tenant.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=1, choices=PrincipalKind.choices)
    # A user's id or a device's thing name: both survive the thing they name,
    # so a deleted device or removed user still gets its tombstone pushed.
    principal = models.CharField(max_length=128)

    class Meta:
        abstract = True

    @property
    def key(self) -> str:
        return snapshot.item_key(self.kind, self.tenant_id, self.principal)


class PrincipalSyncQuerySet(VersionedOutboxQuerySet, TenantScopedQuerySet):
    pass


class PrincipalSync(VersionedOutbox, OfPrincipal):
    """The outbox row of one principal's snapshot: the version the database
    wants in DynamoDB and the version known to be there (authz/versioned_outbox.py).
    """

    Kind = PrincipalKind

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


class SigningKey(models.Model):
    """One token-signing key and where it is in its life (docs/signing-keys.md).

    A key has two halves that share its slot and state: the RSA key of
    platform JWTs, and the Ed25519 key of compact device tokens
    (docs/signing-keys.md#the-compact-half). Keys made before compact tokens
    existed have no compact half (empty compact fields).

    Every key gets its own row and keeps it: a retired key stays as history
    (kid, public key, timestamps) with its private half erased, and the next
    key staged into that slot is a new row. At most one live (not retired) key
    holds a slot, and at most one key is staged or active at a time.
    """

    class Slot(models.TextChoices):
        A = keys.SLOTS[0], "A"
        B = keys.SLOTS[1], "B"

    class State(models.TextChoices):
        STAGED = keys.STAGED, "staged"
        ACTIVE = keys.ACTIVE, "active"
        RETIRING = keys.RETIRING, "retiring"
        RETIRED = keys.RETIRED, "retired"

    slot = models.CharField(max_length=1, choices=Slot.choices)
    # RFC 7638 thumbprint of the public JWK: the `kid` of every token it signs.
    kid = models.CharField(max_length=64, unique=True)
    bits = models.PositiveIntegerField()
    public_pem = models.TextField()
    # Fernet token of the PKCS#8 PEM (authz.tokens); empty once retired.
    private_key_encrypted = models.TextField(blank=True)
    # The compact half: base64url of lambda_bridge.compact.kid_for(raw public
    # key), of the raw 32-byte Ed25519 public key, and the Fernet token of
    # the raw private key (empty once retired, like the RSA one).
    compact_kid = models.CharField(max_length=12, blank=True)
    compact_public = models.CharField(max_length=64, blank=True)
    compact_private_encrypted = models.TextField(blank=True)
    state = models.CharField(max_length=8, choices=State.choices)
    created_at = models.DateTimeField(default=timezone.now)
    staged_at = models.DateTimeField(null=True, blank=True)
    # When a publication that includes this key first succeeded: the
    # propagation delay runs from here, not from the database write.
    published_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retiring_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["slot"], condition=~Q(state=keys.RETIRED),
                                    name="signingkey_one_live_key_per_slot"),
            models.UniqueConstraint(fields=["state"], condition=Q(state__in=[keys.STAGED, keys.ACTIVE]),
                                    name="signingkey_one_staged_one_active"),
            # Compact kids are 3 bytes: the two live keys must not share one.
            models.UniqueConstraint(fields=["compact_kid"], condition=~Q(state=keys.RETIRED) & ~Q(compact_kid=""),
                                    name="signingkey_live_compact_kid_unique"),
            models.CheckConstraint(condition=Q(slot__in=keys.SLOTS), name="signingkey_valid_slot"),
            models.CheckConstraint(condition=Q(state__in=keys.STATES), name="signingkey_valid_state"),
        ]

    def __str__(self) -> str:
        return f"{self.slot} {self.kid[:12]}… ({self.state})"

    @property
    def live(self) -> bool:
        return self.state != keys.RETIRED


class SigningKeyring(VersionedOutbox):
    """The one row that serialises rotation (it is locked by every step and
    every publication) and the outbox of the published key set: the database
    wants `desired_version` in DynamoDB and AWS IoT, `pushed_version` is known
    to be there (authz/versioned_outbox.py)."""

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON)

    class Meta:
        verbose_name = "signing keyring"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="signingkeyring_singleton")]

    def __str__(self) -> str:
        return f"signing keyring v{self.desired_version}"


class IssuedCredentialQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user) -> Q:
        return Q(issued_by=user)

    def live(self, now):
        return self.filter(expires_at__gt=now)


class IssuedCredential(OfPrincipal):
    """One IoT token handed out: which principal it lets connect, as which
    client id, until when. Never the token itself. Kept so that taking access
    away can also disconnect the client ids still connected with it."""

    client_id = models.CharField(max_length=128)
    # Which kind of token (lambda_bridge.vocabulary.CREDENTIAL_KINDS). A
    # compact token has no jti claim: its row's jti is random, one row per
    # issuance (docs/credentials.md#compact-device-tokens), and its kid is
    # the compact kid.
    credential = models.CharField(max_length=8, choices=CREDENTIAL_CHOICES, default=vocabulary.SIGNED_CREDENTIAL)
    jti = models.CharField(max_length=32, unique=True)
    kid = models.CharField(max_length=64)
    # The token's `scope` claim, when it narrows a person's grants.
    scope = models.JSONField(null=True, blank=True)
    issued_by = models.ForeignKey("devices.User", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    objects = IssuedCredentialQuerySet.as_manager()

    class Meta:
        verbose_name = "issued IoT credential"
        ordering = ["-issued_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "kind", "principal", "expires_at"], name="credential_by_principal"),
            models.Index(fields=["expires_at"], name="credential_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class TokenCutoff(OfPrincipal):
    """Tokens of one principal issued before `not_before` are refused
    (docs/live-access.md#token-cut-offs). Set on transfer, removal,
    deactivation and by "sign out" / "revoke credentials"; it only moves forward."""

    # A whole second: the one after the revoking write (tokens carry whole-second `iat`).
    not_before = models.DateTimeField()

    class Meta:
        verbose_name = "token cut-off"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "principal"], name="cutoff_one_row_per_principal"),
        ]

    def __str__(self) -> str:
        return f"{self.key} before {self.not_before:%H:%M:%S}"


class SessionCutQuerySet(VersionedOutboxQuerySet, TenantScopedQuerySet):
    def ready(self):
        """Those whose snapshot, as of the narrowing, is already in DynamoDB:
        a cut before that would let the client reconnect on the old grants."""
        written = PrincipalSync.objects.filter(
            tenant_id=models.OuterRef("tenant_id"), kind=models.OuterRef("kind"),
            principal=models.OuterRef("principal"), pushed_version__gte=models.OuterRef("snapshot_version"),
        )
        return self.filter(models.Exists(written))


class SessionCut(VersionedOutbox, OfPrincipal):
    """The disconnect outbox (authz/versioned_outbox.py): a principal whose
    live connections must be closed once its snapshot at `snapshot_version`
    is written (docs/live-access.md#the-disconnect-outbox). `desired_version`
    moves with each narrowing, `pushed_version` when a cut has run."""

    # The PrincipalSync desired version the cut waits for (the latest narrowing's).
    snapshot_version = models.BigIntegerField(default=0)

    objects = SessionCutQuerySet.as_manager()

    class Meta:
        verbose_name = "session cut"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "principal"], name="cut_one_row_per_principal"),
        ]
        indexes = [
            models.Index(fields=["retry_after"], condition=Q(pushed_version__lt=F("desired_version")),
                         name="cut_lagging"),
        ]

    def __str__(self) -> str:
        return self.key


class AccessReceiptQuerySet(TenantScopedQuerySet):
    def _personal_q(self, user) -> Q:
        return Q(actor=user)


class AccessReceipt(models.Model):
    """What one narrowing write did to live connections: it waits for the
    session cuts the write caused and then says how many connections they
    closed (docs/live-access.md#receipts)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey("devices.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    closed = models.PositiveIntegerField(default=0)
    client_ids = models.JSONField(default=list, blank=True)

    objects = AccessReceiptQuerySet.as_manager()

    class Meta:
        verbose_name = "access receipt"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"receipt {self.pk}: {self.closed if self.finished_at else 'pending'}"

    @property
    def done(self) -> bool:
        return self.finished_at is not None


class ReceiptItem(models.Model):
    """One session cut a receipt waits for, at the cut version the write made."""

    receipt = models.ForeignKey(AccessReceipt, on_delete=models.CASCADE, related_name="items")
    cut = models.ForeignKey(SessionCut, on_delete=models.PROTECT, related_name="+")
    version = models.BigIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)
    client_ids = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["receipt", "cut"], name="receipt_item_one_per_cut")]
        indexes = [models.Index(fields=["cut", "version"], condition=Q(done_at__isnull=True), name="receipt_item_open")]


class ShareSweep(models.Model):
    """How far the sweep of ended shares has come, so that each share's end
    closes its grantee's connections once, not at every beat."""

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON)
    swept_until = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="sharesweep_singleton")]
