"""Live access services and the sessions selector (authz/live/services.py,
selectors.py; docs/api.md#live-access): who may, what each changes, what is
audited, which client ids are ever asked about or closed."""
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from authz.live import selectors, services
from authz.models import AccessReceipt, SessionCut, TokenCutoff
from authz.tokens.iot import IotError
from devices import services as domain
from devices.errors import DomainError, ErrorCode
from devices.models import AuditEvent, Device, Level, Membership, Share
from lambda_bridge import snapshot
from tests.factories import member
from tests.support.live_sessions import CONNECTED_SINCE, StubbedDataPlane, issued

pytestmark = pytest.mark.django_db


@pytest.fixture
def data_plane():
    plane = StubbedDataPlane()
    with plane.stub:
        yield plane
        plane.stub.assert_no_pending_responses()


def cutoffs(world):
    return set(TokenCutoff.objects.filter(tenant=world.tenant).values_list("kind", "principal"))


def audited(action):
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


def membership(world, user):
    return Membership.objects.get(tenant=world.tenant, user=user)


# --- sign out all my apps -----------------------------------------------------------


def test_sign_out_apps_cuts_off_the_callers_tokens_in_that_tenant_only(world, other):
    before = timezone.now()
    services.sign_out_apps(actor=world.bob, tenant=world.tenant)
    cutoff = TokenCutoff.objects.get(tenant=world.tenant, kind=snapshot.USER, principal=str(world.bob.pk))
    assert cutoff.not_before > before
    assert cutoffs(world) == {(snapshot.USER, str(world.bob.pk))}
    assert not TokenCutoff.objects.filter(tenant=other.tenant).exists()
    assert SessionCut.objects.filter(tenant=world.tenant, kind=snapshot.USER, principal=str(world.bob.pk)).exists()
    [event] = audited("iot_credentials.revoke")
    assert (event.actor, event.tenant, event.changes["principal"]) == (world.bob, world.tenant, "user")
    assert AccessReceipt.objects.filter(tenant=world.tenant, actor=world.bob).count() == 1


def test_sign_out_apps_in_a_tenant_one_is_not_in_is_refused(world, other):
    with pytest.raises(DomainError) as refused:
        services.sign_out_apps(actor=other.bob, tenant=world.tenant)
    assert refused.value.code == ErrorCode.NOT_A_MEMBER
    assert not TokenCutoff.objects.exists() and not audited("iot_credentials.revoke")


# --- revoke a device's credentials ---------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owner_or_admin_revokes_a_devices_credentials(world, who):
    services.revoke_device_credentials(actor=getattr(world, who), device=world.lock)
    assert cutoffs(world) == {(snapshot.DEVICE, world.lock.thing_name)}
    [event] = audited("iot_credentials.revoke")
    assert (event.device_id, event.changes["thing_name"]) == (world.lock.pk, world.lock.thing_name)


def test_a_manager_of_the_device_may_not_revoke_its_credentials(world):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.MANAGE)
    with pytest.raises(PermissionDenied):
        services.revoke_device_credentials(actor=world.bob, device=world.lock)
    assert not TokenCutoff.objects.exists() and not audited("iot_credentials.revoke")


# --- revoke everything a member holds -------------------------------------------------


def test_revoke_member_access_takes_every_share_and_token_but_not_membership_or_devices(world, other):
    own = Device.objects.create(tenant=world.tenant, owner=world.bob, device_type=world.type, name="Bob's",
                                thing_name="bobs-own-thing")
    direct = domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.MANAGE,
                                 can_reshare=True)
    grouped = domain.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.VIEW)
    reshare = domain.create_share(actor=world.bob, grantee=world.carol, device=world.lock, level=Level.VIEW)
    kept = domain.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    elsewhere = domain.create_share(actor=other.owner, grantee=other.bob, device=other.lock, level=Level.VIEW)

    revoked = services.revoke_member_access(actor=world.admin, membership=membership(world, world.bob))

    assert {s.pk for s in revoked} == {direct.pk, grouped.pk, reshare.pk}
    assert set(Share.objects.filter(revoked_at__isnull=True).values_list("pk", flat=True)) == {kept.pk, elsewhere.pk}
    assert Membership.objects.filter(tenant=world.tenant, user=world.bob).exists()
    assert Device.objects.get(pk=own.pk).owner == world.bob
    assert cutoffs(world) == {(snapshot.USER, str(world.bob.pk))}
    [event] = audited("membership.revoke_access")
    assert event.actor == world.admin and event.tenant == world.tenant
    assert (event.changes["shares_revoked"], event.changes["reshares_revoked"]) == (2, 1)
    reasons = {e.changes["reason"] for e in audited("share.revoke")}
    assert reasons == {"membership.revoke_access"}


def test_revoke_member_access_needs_a_tenant_admin(world):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
    with pytest.raises(PermissionDenied):
        services.revoke_member_access(actor=world.owner, membership=membership(world, world.bob))
    assert Share.objects.filter(revoked_at__isnull=True).count() == 1
    assert not TokenCutoff.objects.exists() and not audited("membership.revoke_access")


def test_revoke_member_access_not_on_yourself(world):
    with pytest.raises(DomainError) as refused:
        services.revoke_member_access(actor=world.admin, membership=membership(world, world.admin))
    assert refused.value.code == ErrorCode.REVOKE_OWN_ACCESS
    assert not TokenCutoff.objects.exists()


def test_touching_an_owner_needs_an_owner(world):
    boss = member(world.tenant, Membership.Role.OWNER, email="boss@acme.test")
    other_owner = member(world.tenant, Membership.Role.OWNER, email="boss2@acme.test")
    with pytest.raises(PermissionDenied):
        services.revoke_member_access(actor=world.admin, membership=membership(world, boss))
    assert not TokenCutoff.objects.exists()
    services.revoke_member_access(actor=other_owner, membership=membership(world, boss))
    assert cutoffs(world) == {(snapshot.USER, str(boss.pk))}


# --- live sessions ------------------------------------------------------------------


def user_token(world, user, suffix, **kw):
    return issued(tenant=world.tenant, kind=snapshot.USER, principal=str(user.pk),
                  client_id=f"u{world.tenant.pk}.{user.pk}.{suffix}", **kw)


def test_sessions_ask_only_about_client_ids_that_can_reach_the_device(world, other, data_plane):
    now = timezone.now()
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    domain.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    device_token = issued(tenant=world.tenant, kind=snapshot.DEVICE, principal=world.lock.thing_name,
                          client_id=world.lock.thing_name, issued_at=now - timedelta(minutes=5))
    bob_old = user_token(world, world.bob, "old", issued_at=now - timedelta(minutes=3))
    bob_new = user_token(world, world.bob, "new", issued_at=now - timedelta(minutes=1),
                         scope={"things": [world.lock.thing_name]})
    user_token(world, world.alice, "lamp-only", scope={"things": [world.lamp.thing_name]})  # scoped away
    user_token(world, world.alice, "group", scope={"group": world.group.pk})  # the lock is not in the group
    user_token(world, world.carol, "no-share")  # carol cannot reach the lock
    user_token(world, world.bob, "expired", issued_at=now - timedelta(hours=2))  # lifetime 1 h
    issued(tenant=other.tenant, kind=snapshot.USER, principal=str(world.bob.pk), client_id="elsewhere")

    data_plane.expect_connected(world.lock.thing_name)
    data_plane.expect_connected(bob_new.client_id)
    data_plane.expect_disconnected(bob_old.client_id)

    sessions = selectors.device_sessions(actor=world.owner, device=world.lock, now=now,
                                         gateway=data_plane.gateway)

    assert [(s.client_id, s.kind, s.user) for s in sessions] == [
        (world.lock.thing_name, "device", None), (bob_new.client_id, "user", world.bob)]
    assert sessions[0].connected_since == CONNECTED_SINCE
    assert sessions[0].expires_at == device_token.expires_at
    assert sessions[1].issued_at == bob_new.issued_at


def test_a_group_scoped_token_reaches_the_groups_devices(world, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.VIEW)
    token = user_token(world, world.bob, "group", scope={"group": world.group.pk})
    data_plane.expect_unknown(world.lamp.thing_name)
    data_plane.expect_connected(token.client_id)
    sessions = selectors.device_sessions(actor=world.admin, device=world.lamp, gateway=data_plane.gateway)
    assert [s.client_id for s in sessions] == [token.client_id]


def test_sessions_are_for_the_owner_or_an_admin_only(world, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.MANAGE)
    with pytest.raises(PermissionDenied):
        selectors.device_sessions(actor=world.bob, device=world.lock, gateway=data_plane.gateway)


def test_a_sharee_outside_their_weekly_hours_is_still_listed_and_can_be_ended(world, data_plane):
    # A connection opened inside the window keeps the device until the
    # sweep's cut lands; the owner must see it and be able to end it then.
    elsewhere = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(timezone.now().weekday() + 3) % 7]
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL,
                        schedule={"timezone": "UTC", "windows": [{"days": [elsewhere], "start": "09:00",
                                                                   "end": "10:00"}]})
    token = user_token(world, world.bob, "app")
    data_plane.expect_unknown(world.lock.thing_name)
    data_plane.expect_connected(token.client_id)
    sessions = selectors.device_sessions(actor=world.admin, device=world.lock, gateway=data_plane.gateway)
    assert [s.client_id for s in sessions] == [token.client_id]
    data_plane.expect_delete(token.client_id)
    assert services.end_session(actor=world.admin, device=world.lock, client_id=token.client_id,
                                gateway=data_plane.gateway) is True


def test_end_session_closes_one_candidate_and_audits_it(world, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    token = user_token(world, world.bob, "app")
    data_plane.expect_delete(token.client_id)
    assert services.end_session(actor=world.admin, device=world.lock, client_id=token.client_id,
                                gateway=data_plane.gateway) is True
    [event] = audited("session.end")
    assert event.changes == {"client_id": token.client_id, "kind": "user", "user": world.bob.email, "closed": True}
    # Ending is no revoke: bob keeps his share and his token.
    assert Share.objects.filter(grantee=world.bob, revoked_at__isnull=True).exists()
    assert not TokenCutoff.objects.exists()


def test_end_session_of_a_connection_already_gone_says_so(world, data_plane):
    data_plane.expect_unknown(world.lock.thing_name, "delete_connection")
    assert services.end_session(actor=world.admin, device=world.lock, client_id=world.lock.thing_name,
                                gateway=data_plane.gateway) is False
    assert audited("session.end")[0].changes["closed"] is False


@pytest.mark.parametrize("client_id", ["other-device", "someone-else"])
def test_end_session_refuses_a_client_id_that_cannot_reach_the_device(world, data_plane, client_id):
    user_token(world, world.carol, "x")  # carol holds a token but no share of the lock
    client_id = world.lamp.thing_name if client_id == "other-device" else f"u{world.tenant.pk}.{world.carol.pk}.x"
    with pytest.raises(DomainError) as refused:
        services.end_session(actor=world.owner, device=world.lock, client_id=client_id, gateway=data_plane.gateway)
    assert refused.value.code == ErrorCode.NO_SUCH_SESSION
    assert not audited("session.end")


def test_end_session_when_aws_iot_fails_audits_nothing(world, data_plane):
    data_plane.expect_failure(world.lock.thing_name, "delete_connection")
    with pytest.raises(IotError):
        services.end_session(actor=world.owner, device=world.lock, client_id=world.lock.thing_name,
                             gateway=data_plane.gateway)
    assert not audited("session.end")


def test_end_session_needs_the_owner_or_an_admin(world, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.MANAGE)
    with pytest.raises(PermissionDenied):
        services.end_session(actor=world.bob, device=world.lock, client_id=world.lock.thing_name,
                             gateway=data_plane.gateway)
    assert not audited("session.end")


def test_an_owner_ends_the_devices_own_session_but_not_a_persons(world, data_plane):
    """A person's connection carries all their devices, and a share needs no
    consent: the owner removes a guest by revoking the share."""
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    token = user_token(world, world.bob, "app")
    with pytest.raises(PermissionDenied):
        services.end_session(actor=world.owner, device=world.lock, client_id=token.client_id,
                             gateway=data_plane.gateway)
    data_plane.expect_delete(world.lock.thing_name)
    assert services.end_session(actor=world.owner, device=world.lock, client_id=world.lock.thing_name,
                                gateway=data_plane.gateway) is True
    assert [e.changes["kind"] for e in audited("session.end")] == ["device"]


def test_a_session_cannot_hide_behind_newer_tokens(world, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    now = timezone.now()
    hidden = user_token(world, world.bob, "hidden", issued_at=now - timedelta(minutes=30))
    for n in range(selectors.MAX_CANDIDATES + 5):
        user_token(world, world.bob, f"n{n}", issued_at=now - timedelta(seconds=n))
    assert hidden.client_id not in {c.client_id for c in selectors.session_candidates(device=world.lock)}
    data_plane.expect_delete(hidden.client_id)
    assert services.end_session(actor=world.admin, device=world.lock, client_id=hidden.client_id,
                                gateway=data_plane.gateway) is True


def test_revoke_member_access_also_cuts_off_device_tokens_they_issued(world):
    credential = issued(tenant=world.tenant, kind=snapshot.DEVICE, principal=world.lock.thing_name,
                        client_id=world.lock.thing_name, issued_by=world.alice)
    domain.change_member_role(actor=world.admin, membership=membership(world, world.alice),
                              role=Membership.Role.ADMIN)
    services.revoke_member_access(actor=world.admin, membership=membership(world, world.alice))
    assert (snapshot.DEVICE, credential.principal) in cutoffs(world)
