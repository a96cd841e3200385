"""Every clash with the current state the API can meet answers 409 with its
registry code, decided by the service that refused, not re-derived by a view."""
from datetime import timedelta

import pytest
from django.utils import timezone

from devices import services
from devices.errors import ErrorCode, Kind
from devices.models import Invitation, Level
from tests.support.api import assert_error, tenant_url, url

pytestmark = pytest.mark.django_db

EVE = "eve@example.test"


def invite_eve(world) -> Invitation:
    return services.create_invitation(actor=world.owner, email=EVE, device=world.lock, level=Level.CONTROL)


def thing_name_taken(world, client_for, eve):
    return client_for(world.alice).post(tenant_url("device-list", world), {
        "name": "Copy", "device_type": world.type.slug, "thing_name": world.lamp.thing_name})


def share_exists(world, client_for, eve):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    return client_for(world.owner).post(tenant_url("device-shares", world, device=world.lock.pk),
                                        {"grantee": world.alice.email, "level": "control"})


def invitation_pending(world, client_for, eve):
    invite_eve(world)
    return client_for(world.owner).post(tenant_url("device-shares", world, device=world.lock.pk),
                                        {"grantee": EVE, "level": "view"})


def share_revoked_on_revoke(world, client_for, eve):
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    services.revoke_share(actor=world.owner, share=share)
    return client_for(world.owner).post(tenant_url("share-revoke", world, pk=share.pk))


def share_revoked_on_update(world, client_for, eve):
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    services.revoke_share(actor=world.owner, share=share)
    return client_for(world.owner).patch(tenant_url("share-detail", world, pk=share.pk), {"level": "control"})


def group_name_taken_on_create(world, client_for, eve):
    return client_for(world.owner).post(tenant_url("group-list", world), {"name": world.group.name})


def group_name_taken_on_rename(world, client_for, eve):
    office = services.create_group(actor=world.owner, tenant=world.tenant, name="Office")
    return client_for(world.owner).patch(tenant_url("group-detail", world, pk=office.pk), {"name": world.group.name})


def already_in_group(world, client_for, eve):
    return client_for(world.owner).post(tenant_url("group-devices", world, group=world.group.pk),
                                        {"device": world.lamp.pk})


def invitation_not_pending_on_accept(world, client_for, eve):
    invitation = invite_eve(world)
    services.decline_invitation(actor=eve, invitation=invitation)
    return client_for(eve).post(url("invitation-accept", pk=invitation.pk))


def invitation_not_pending_on_decline(world, client_for, eve):
    invitation = invite_eve(world)
    services.accept_invitation(actor=eve, invitation=invitation)
    return client_for(eve).post(url("invitation-decline", pk=invitation.pk))


def invitation_not_pending_on_cancel(world, client_for, eve):
    invitation = invite_eve(world)
    services.cancel_invitation(actor=world.owner, invitation=invitation)
    return client_for(world.owner).post(tenant_url("invitation-cancel", world, pk=invitation.pk))


def invitation_lapsed(world, client_for, eve):
    invitation = invite_eve(world)
    Invitation.objects.filter(pk=invitation.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    return client_for(eve).post(url("invitation-accept", pk=invitation.pk))


@pytest.mark.parametrize("clash, code", [
    (thing_name_taken, ErrorCode.THING_NAME_TAKEN),
    (share_exists, ErrorCode.SHARE_EXISTS),
    (invitation_pending, ErrorCode.INVITATION_PENDING),
    (share_revoked_on_revoke, ErrorCode.SHARE_REVOKED),
    (share_revoked_on_update, ErrorCode.SHARE_REVOKED),
    (group_name_taken_on_create, ErrorCode.GROUP_NAME_TAKEN),
    (group_name_taken_on_rename, ErrorCode.GROUP_NAME_TAKEN),
    (already_in_group, ErrorCode.ALREADY_IN_GROUP),
    (invitation_not_pending_on_accept, ErrorCode.INVITATION_NOT_PENDING),
    (invitation_not_pending_on_decline, ErrorCode.INVITATION_NOT_PENDING),
    (invitation_not_pending_on_cancel, ErrorCode.INVITATION_NOT_PENDING),
    (invitation_lapsed, ErrorCode.INVITATION_LAPSED),
], ids=lambda value: getattr(value, "__name__", None) or value.value)
def test_a_clash_is_409_with_its_code(clash, code, world, client_for, django_user_model):
    assert code.kind == Kind.CONFLICT
    eve = django_user_model.objects.create_user(email=EVE, password="pw")
    body = assert_error(clash(world, client_for, eve), 409, "conflict", registry_code=code)
    assert body["detail"]


def test_bad_input_keeps_400_and_carries_its_code(world, client_for):
    response = client_for(world.owner).post(tenant_url("device-shares", world, device=world.lock.pk),
                                            {"grantee": world.owner.email, "level": "view"})
    body = assert_error(response, 400, "invalid", registry_code=ErrorCode.GRANTEE_IS_OWNER)
    assert set(body["fields"]) == {"grantee"}


def test_errors_that_are_no_service_refusal_copy_error_into_code(world, client_for):
    body = assert_error(client_for(world.owner).get(tenant_url("device-detail", world, pk=10**9)), 404)
    assert body["code"] == body["error"] == "not_found"
