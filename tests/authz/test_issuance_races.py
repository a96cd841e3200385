"""Issuing a token races a transfer or a removal of its principal: the
token must come wholly before the revocation (and be cut off by it) or
wholly after it (and be judged by the new state), never an old right dated
after the cut-off (docs/live-access.md#token-cut-offs)."""
import threading

import jwt
import pytest
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections

from authz.live import cutoffs
from authz.models import IssuedCredential
from authz.tokens import credentials, rotation, signing_keys
from devices import access, services
from devices.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def active_key(table):
    rotation.rotate(actor=None)


def _during_key_lookup(monkeypatch, write):
    """Run `write` just after issuance has checked the caller's request and
    looked up the signing key, before it commits to a token."""
    real = signing_keys.active_signing_key

    def lookup():
        write()
        return real()

    monkeypatch.setattr(signing_keys, "active_signing_key", lookup)


def test_a_transfer_committed_mid_issuance_refuses_the_old_owner(world, monkeypatch):
    _during_key_lookup(monkeypatch, lambda: services.transfer_device(actor=world.owner, device=world.lock,
                                                                     new_owner=world.alice))
    with pytest.raises(PermissionDenied):
        credentials.issue_device_credentials(actor=world.owner, device=world.lock)
    assert not IssuedCredential.objects.filter(principal=world.lock.thing_name).exists()


def test_a_removal_committed_mid_issuance_refuses_the_removed_member(world, monkeypatch):
    membership = Membership.objects.get(tenant=world.tenant, user=world.bob)
    _during_key_lookup(monkeypatch, lambda: services.remove_member(actor=world.admin, membership=membership))
    with pytest.raises(PermissionDenied):
        credentials.issue_user_credentials(actor=world.bob, tenant=world.tenant)
    assert not IssuedCredential.objects.filter(principal=str(world.bob.pk)).exists()


def test_issuance_waits_for_a_transfer_in_flight_then_judges_by_its_outcome(world):
    """The transfer holds the device's snapshot row until it commits; the old
    owner's issuance waits for it and is then refused."""
    inside, release = threading.Event(), threading.Event()

    def hold(change):
        if change.tokens_revoked:
            inside.set()
            release.wait(10)

    outcome = {}

    def transfer():
        try:
            services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.alice)
        finally:
            close_old_connections()

    def issue():
        try:
            outcome["token"] = credentials.issue_device_credentials(actor=world.owner, device=world.lock)
        except PermissionDenied as exc:
            outcome["refused"] = exc
        finally:
            close_old_connections()

    access.connect(hold)
    try:
        writer = threading.Thread(target=transfer)
        writer.start()
        assert inside.wait(10)
        issuer = threading.Thread(target=issue)
        issuer.start()
        issuer.join(1.0)
        waited = issuer.is_alive()  # blocked on the transfer's row lock
        release.set()
        writer.join(10)
        issuer.join(10)
    finally:
        release.set()
        access.disconnect(hold)
    assert waited
    assert "refused" in outcome and "token" not in outcome


def test_a_token_issued_right_after_a_revocation_is_dated_at_its_cutoff_and_the_new_owner_gets_one(world):
    services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.alice)
    creds = credentials.issue_device_credentials(actor=world.alice, device=world.lock)
    floor = cutoffs.issue_floor(tenant_id=world.tenant.pk, kind="d", principal=world.lock.thing_name)
    claims = jwt.decode(creds.token, options={"verify_signature": False})
    assert floor is not None and claims["iat"] >= floor and claims["nbf"] == claims["iat"]
