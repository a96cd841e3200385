"""The signing-key state machine: bootstrap, stage, promote, retire, rotate,
and what the key item holds after each step."""
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings

from authz.models import SigningKey, SigningKeyring
from authz.tokens import publication, rotation, signing_keys
from devices.models import AuditEvent
from lambda_bridge import keys
from tests.authz.signing_helpers import Clock, assert_converged, keyring

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock():
    return Clock()


def states():
    return {k.slot: k.state for k in SigningKey.objects.exclude(state=keys.RETIRED)}


def test_first_rotate_bootstraps_slot_a_as_active(table, clock):
    result = rotation.rotate(actor=None, now=clock.now)

    assert result.step == rotation.BOOTSTRAP and result.changed
    key = SigningKey.objects.get()
    assert (key.slot, key.state, key.bits) == ("A", keys.ACTIVE, 2048)
    ring = assert_converged(table)
    assert ring.active == "A" and ring.slots["A"].kid == key.kid
    assert signing_keys.active_signing_key().kid == key.kid
    assert list(AuditEvent.objects.order_by("id").values_list("action", "tenant")) == [
        ("signing_key.bootstrap", None), ("signing_key.publish", None)]


def test_full_cycle_and_the_key_item_after_each_step(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    a = SigningKey.objects.get(slot="A")

    staged = rotation.stage(actor=None, now=clock.now)
    b = SigningKey.objects.get(slot="B")
    assert staged.kid == b.kid and b.kid != a.kid
    ring = assert_converged(table)
    assert ring.active == "A"
    assert {n: s.state for n, s in ring.slots.items()} == {"A": keys.ACTIVE, "B": keys.STAGED}
    assert set(ring.verifying()) == {a.kid, b.kid}
    assert signing_keys.active_signing_key().kid == a.kid  # a staged key signs nothing yet

    rotation.promote(actor=None, now=clock.past_propagation())
    ring = assert_converged(table)
    assert ring.active == "B"
    assert {n: s.state for n, s in ring.slots.items()} == {"A": keys.RETIRING, "B": keys.ACTIVE}
    assert signing_keys.active_signing_key().kid == b.kid

    rotation.retire(actor=None, now=clock.past_token_lifetime())
    ring = assert_converged(table)
    assert ring.active == "B" and set(ring.slots) == {"B"}  # the retired key leaves the item
    assert set(ring.verifying()) == {b.kid}
    a.refresh_from_db()
    # History survives; the private half does not.
    assert a.state == keys.RETIRED and a.retired_at == clock.now and a.private_key_encrypted == ""
    assert [e for e in AuditEvent.objects.order_by("id").values_list("action", flat=True)
            if e != "signing_key.publish"] == [
        "signing_key.bootstrap", "signing_key.stage", "signing_key.promote", "signing_key.retire"]

    # The next rotation stages into the freed slot A, as a new row.
    rotation.stage(actor=None, now=clock.now)
    assert states() == {"A": keys.STAGED, "B": keys.ACTIVE}
    assert SigningKey.objects.filter(slot="A").count() == 2


def test_versions_only_grow(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    versions = [keyring(table).version]
    rotation.stage(actor=None, now=clock.now)
    versions.append(keyring(table).version)
    rotation.promote(actor=None, now=clock.past_propagation())
    versions.append(keyring(table).version)
    assert versions == sorted(set(versions))


def test_rotate_walks_the_whole_cycle_on_schedule_and_is_idempotent(table, clock, settings):
    rotation.rotate(actor=None, now=clock.now)
    assert rotation.rotate(actor=None, now=clock.now).step is None  # nothing due
    assert states() == {"A": keys.ACTIVE}

    clock.advance(settings.SIGNING_ROTATION_DAYS * 86400 + 1)
    assert rotation.rotate(actor=None, now=clock.now).step == rotation.STAGE
    again = rotation.rotate(actor=None, now=clock.now)
    assert again.step is None and "promote B" in again.message
    assert rotation.rotate(actor=None, now=clock.past_propagation()).step == rotation.PROMOTE
    assert rotation.rotate(actor=None, now=clock.now).step is None
    assert rotation.rotate(actor=None, now=clock.past_token_lifetime()).step == rotation.RETIRE
    assert states() == {"B": keys.ACTIVE}
    assert rotation.rotate(actor=None, now=clock.now).step is None
    assert_converged(table)
    events = AuditEvent.objects.filter(action__startswith="signing_key.").exclude(action="signing_key.publish")
    assert events.count() == 4


def test_steps_repeated_change_nothing(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    assert "already active" in rotation.bootstrap(actor=None, now=clock.now).message
    first = rotation.stage(actor=None, now=clock.now)
    second = rotation.stage(actor=None, now=clock.now)
    assert not second.changed and first.kid in second.message
    assert "no retiring key" in rotation.retire(actor=None, now=clock.now).message
    rotation.promote(actor=None, now=clock.past_propagation())
    assert "no staged key" in rotation.promote(actor=None, now=clock.now).message
    assert SigningKey.objects.count() == 2


def test_early_promote_and_retire_are_refused_with_the_reason(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)

    with pytest.raises(rotation.NotYetSafe) as refused:
        rotation.promote(actor=None, now=clock.advance(10))
    assert "not yet safe to promote B" in str(refused.value) and "--force" in str(refused.value)
    assert refused.value.due_at > clock.now
    assert states() == {"A": keys.ACTIVE, "B": keys.STAGED}

    forced = rotation.promote(actor=None, force=True, now=clock.now)
    assert forced.changed and "(forced)" in forced.message
    assert AuditEvent.objects.get(action="signing_key.promote").changes["forced"] is True

    with pytest.raises(rotation.NotYetSafe) as refused:
        rotation.retire(actor=None, now=clock.advance(60))
    assert "not yet safe to retire A" in str(refused.value) and "expired" in str(refused.value)
    rotation.retire(actor=None, force=True, now=clock.now)
    assert states() == {"B": keys.ACTIVE}
    assert_converged(table)


def test_stage_refused_while_the_free_slot_still_holds_a_retiring_key(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)
    rotation.promote(actor=None, now=clock.past_propagation())

    with pytest.raises(signing_keys.SigningError, match="still holds retiring key"):
        rotation.stage(actor=None, now=clock.now)


def test_stage_before_bootstrap_is_refused(table, clock):
    with pytest.raises(signing_keys.SigningError, match="bootstraps slot A"):
        rotation.stage(actor=None, now=clock.now)
    assert not SigningKey.objects.exists()


def test_promote_waits_for_publication_not_just_the_database(table, clock, monkeypatch):
    """The propagation delay runs from the moment the staged key reached the
    table, so a publication that failed for an hour still gets its full delay."""
    rotation.rotate(actor=None, now=clock.now)
    monkeypatch.setattr(publication, "_write_item", _fail_publish)
    with pytest.raises(publication.PublishError):
        rotation.stage(actor=None, now=clock.now)
    monkeypatch.undo()
    late = clock.advance(3600)

    with pytest.raises(rotation.NotYetSafe):
        rotation.promote(actor=None, now=late)  # publishes first, then waits from there
    assert SigningKey.objects.get(slot="B").published_at == late
    rotation.promote(actor=None, now=clock.past_propagation())
    assert_converged(table)


def _fail_publish(*args, **kwargs):
    raise publication.PublishError("DynamoDB ServiceUnavailable: try later")


def test_failed_publication_is_recorded_and_retried(table, clock, monkeypatch):
    rotation.rotate(actor=None, now=clock.now)
    monkeypatch.setattr(publication, "_write_item", _fail_publish)
    with pytest.raises(publication.PublishError, match="ServiceUnavailable"):
        rotation.stage(actor=None, now=clock.now)
    row = SigningKeyring.objects.get()
    assert row.pushed_version < row.desired_version and row.attempts == 1
    assert "ServiceUnavailable" in row.last_error
    assert keyring(table).slots.keys() == {"A"}
    monkeypatch.undo()

    assert rotation.rotate(actor=None, now=clock.now).published_version
    assert_converged(table)


def test_a_key_item_ahead_of_the_database_is_overtaken(table, clock):
    """After a database restore the table may hold a newer version than the
    database knows of; the database is the truth about which keys exist."""
    from authz.snapshots import store

    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)
    ahead = keyring(table)
    stray = keys.Keyring(version=ahead.version + 10**9, active="A", slots={"A": ahead.slots["A"]})
    store.client().put_item(TableName=table.name, Item=keys.to_item(stray))
    SigningKeyring.objects.update(pushed_version=0)

    rotation.rotate(actor=None, now=clock.now)
    ring = assert_converged(table)
    assert ring.version > stray.version and set(ring.slots) == {"A", "B"}


def test_status_lists_slots_states_and_next_steps(table, clock):
    assert rotation.status(now=clock.now).next.step == rotation.BOOTSTRAP
    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)
    st = rotation.status(now=clock.advance(60))

    by_slot = {k.slot: k for k in st.keys}
    assert by_slot["B"].state == keys.STAGED and by_slot["B"].next_step == rotation.PROMOTE
    assert by_slot["B"].next_at == clock.now - timedelta(seconds=60) + timedelta(
        seconds=django_settings.SIGNING_PROPAGATION_SECONDS)
    assert by_slot["A"].next_step.startswith("retiring at the promote")
    assert by_slot["A"].age.total_seconds() == pytest.approx(60, abs=1)
    assert st.next.step == rotation.PROMOTE and not st.next.due(clock.now)
    assert st.in_sync


# --- keys at rest ---------------------------------------------------------------


def test_private_key_is_encrypted_and_decrypts_only_with_the_configured_key(table, clock, settings):
    rotation.rotate(actor=None, now=clock.now)
    key = SigningKey.objects.get()
    stored = key.private_key_encrypted

    assert "PRIVATE KEY" not in stored and "BEGIN" not in stored
    pem = MultiFernet([Fernet(k) for k in settings.SIGNING_KEY_ENCRYPTION_KEYS]).decrypt(stored.encode())
    private = serialization.load_pem_private_key(pem, password=None)
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert public == key.public_pem
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(stored.encode())

    signing_keys._decrypt.cache_clear()
    settings.SIGNING_KEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(signing_keys.SigningError, match="cannot decrypt") as refused:
        signing_keys.active_signing_key()
    assert "\n" not in str(refused.value)

    # Rotating the encryption key: a new key first, the old one still decrypts.
    signing_keys._decrypt.cache_clear()
    settings.SIGNING_KEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), django_settings_default_key()]
    assert signing_keys.active_signing_key().kid == key.kid


def django_settings_default_key() -> str:
    from config.settings.base import DEV_SIGNING_KEY_ENCRYPTION_KEY

    return DEV_SIGNING_KEY_ENCRYPTION_KEY


def test_keys_shorter_than_2048_bits_are_refused(table, clock, settings):
    settings.SIGNING_KEY_BITS = 1024
    with pytest.raises(signing_keys.SigningError, match="at least 2048 bits"):
        rotation.rotate(actor=None, now=clock.now)
    assert not SigningKey.objects.exists() and keyring(table) is None


def test_missing_encryption_key_refuses_to_create_keys(table, clock, settings):
    settings.SIGNING_KEY_ENCRYPTION_KEYS = []
    with pytest.raises(signing_keys.SigningError, match="SIGNING_KEY_ENCRYPTION_KEYS is not set"):
        rotation.rotate(actor=None, now=clock.now)
    assert not SigningKey.objects.exists()


def test_kid_is_the_rfc_7638_thumbprint():
    # The worked example of RFC 7638 §3.1.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
         "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgd"
         "AZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"
         "kEgU8awapJzKnqDKgw")
    import base64

    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert signing_keys.jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_generated_kid_matches_the_thumbprint_of_its_public_key(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    key = SigningKey.objects.get()
    public = serialization.load_pem_public_key(key.public_pem.encode())
    assert key.kid == signing_keys.jwk_thumbprint(public) and len(key.kid) == 43


def test_private_key_never_appears_in_audit_events(table, clock):
    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)
    secrets = []
    for key in SigningKey.objects.all():
        pem = signing_keys._fernet().decrypt(key.private_key_encrypted.encode()).decode()
        secrets += [key.private_key_encrypted, pem.splitlines()[1], pem.splitlines()[-2]]
    rotation.promote(actor=None, now=clock.past_propagation())
    rotation.retire(actor=None, now=clock.past_token_lifetime())

    dumped = " ".join(f"{e.object_repr} {e.changes}" for e in AuditEvent.objects.all())
    assert "PRIVATE" not in dumped
    assert not [s for s in secrets if s in dumped]


def test_rotate_publishes_again_when_the_item_is_gone(table, clock):
    """A recreated table (or moto restarted under `make run`) loses the key
    item while the database still says it was published."""
    from authz.snapshots import store

    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)
    store.client().delete_item(TableName=table.name, Key={"pk": {"S": keys.ITEM_KEY}})
    assert keyring(table) is None

    assert rotation.promote(actor=None, now=clock.now + timedelta(seconds=1), force=True).changed
    rotation.retire(actor=None, force=True, now=clock.now)  # the steps publish their own versions regardless
    store.client().delete_item(TableName=table.name, Key={"pk": {"S": keys.ITEM_KEY}})

    result = rotation.rotate(actor=None, now=clock.now)
    assert result.step is None and result.published_version
    assert_converged(table)
    assert rotation.rotate(actor=None, now=clock.now).published_version is None  # and only once
