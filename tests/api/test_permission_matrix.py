"""Who may do what, through the API, from the sharing rules (docs/sharing.md):

- levels view < control < manage < owner; view and control see the device,
  manage also renames it and sees who has access and the audit log;
- the owner and tenant admins rename, delete, transfer, share, update and
  revoke anything; a manage share *with* can_reshare shares onwards, one
  without it does not; control and view share nothing;
- shares are seen by their grantee, the target's owner and tenant admins;
  a grantee may always leave (revoke) their own share but not change it;
- a group is seen by its owner, its sharees and tenant admins, and changed
  by its owner and tenant admins only;
- whoever cannot see an object gets 404, whoever can see it but may not do
  the action gets 403;
- live access (docs/api.md#live-access): a device's credentials are revoked,
  and its live sessions seen and ended, by its owner and tenant admins; any
  member signs their own apps out; only tenant admins revoke everything a
  member holds (members see no one's membership but their own); a receipt
  is seen by its actor and tenant admins.

The expectations below are written from those rules, not read off the code.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from authz.live import services as live
from authz.models import AccessReceipt
from authz.tokens import iot
from devices import services
from devices.models import AuditEvent, Device, DeviceGroup, Level, Share
from tests.factories import member
from tests.support.api import tenant_url
from tests.support.live_sessions import StubbedDataPlane

pytestmark = pytest.mark.django_db

ACTORS = ["owner", "manage_reshare", "manage", "control", "view", "stranger", "admin"]


class Cast:
    """The world's lock, shared at every level; the view sharee also holds the group."""

    def __init__(self, world):
        self.world = world
        self.users = {
            "owner": world.owner,
            "manage_reshare": world.alice,
            "manage": world.bob,
            "control": world.carol,
            "view": member(world.tenant, email="dave@acme.test"),
            "stranger": member(world.tenant, email="erin@acme.test"),
            "admin": world.admin,
        }
        self.newcomer = member(world.tenant, email="frank@acme.test")
        grant = lambda who, level, **kw: services.create_share(  # noqa: E731
            actor=world.owner, grantee=self.users[who], device=world.lock, level=level, **kw)
        grant("manage_reshare", Level.MANAGE, can_reshare=True)
        grant("manage", Level.MANAGE)
        self.control_share = grant("control", Level.CONTROL)
        grant("view", Level.VIEW)
        services.create_share(actor=world.owner, grantee=self.users["view"], group=world.group, level=Level.VIEW)
        live.sign_out_apps(actor=world.owner, tenant=world.tenant)
        self.receipt = AccessReceipt.objects.get(actor=world.owner)


def lock(c):
    return {"device": c.world.lock.pk}


# action -> (method, url name, path kwargs, body, expected status per actor)
ACTIONS = {
    "see device": ("get", "device-detail", lambda c: {"pk": c.world.lock.pk}, None,
                   dict(owner=200, manage_reshare=200, manage=200, control=200, view=200, stranger=404, admin=200)),
    "rename device": ("patch", "device-detail", lambda c: {"pk": c.world.lock.pk}, {"name": "Door"},
                      dict(owner=200, manage_reshare=200, manage=200, control=403, view=403, stranger=404, admin=200)),
    "delete device": ("delete", "device-detail", lambda c: {"pk": c.world.lock.pk}, None,
                      dict(owner=204, manage_reshare=403, manage=403, control=403, view=403, stranger=404, admin=204)),
    "transfer device": ("post", "device-transfer", lock, lambda c: {"new_owner": c.newcomer.email},
                        dict(owner=200, manage_reshare=403, manage=403, control=403, view=403, stranger=404,
                             admin=200)),
    "share device": ("post", "device-shares", lock, lambda c: {"grantee": c.newcomer.email, "level": "view"},
                     dict(owner=201, manage_reshare=201, manage=403, control=403, view=403, stranger=404, admin=201)),
    "invite to device": ("post", "device-shares", lock, {"grantee": "outsider@example.test", "level": "view"},
                         dict(owner=202, manage_reshare=202, manage=403, control=403, view=403, stranger=404,
                              admin=202)),
    "list device shares": ("get", "device-shares", lock, None,
                           dict(owner=200, manage_reshare=200, manage=200, control=200, view=200, stranger=404,
                                admin=200)),
    "see own access": ("get", "device-access", lock, None,
                       dict(owner=200, manage_reshare=200, manage=200, control=200, view=200, stranger=404,
                            admin=200)),
    "preview own access in two days": ("get", "device-access", lock,
                                       lambda c: {"at": (timezone.now() + timedelta(days=2)).isoformat()},
                                       dict(owner=200, manage_reshare=200, manage=200, control=200, view=200,
                                            stranger=404, admin=200)),
    "see everyone's access": ("get", "device-access-list", lock, None,
                              dict(owner=200, manage_reshare=200, manage=200, control=403, view=403, stranger=404,
                                   admin=200)),
    "read audit log": ("get", "device-audit", lock, None,
                       dict(owner=200, manage_reshare=200, manage=200, control=403, view=403, stranger=404,
                            admin=200)),
    "see the control share": ("get", "share-detail", lambda c: {"pk": c.control_share.pk}, None,
                              dict(owner=200, manage_reshare=404, manage=404, control=200, view=404, stranger=404,
                                   admin=200)),
    "change the control share": ("patch", "share-detail", lambda c: {"pk": c.control_share.pk}, {"level": "view"},
                                 dict(owner=200, manage_reshare=404, manage=404, control=403, view=404, stranger=404,
                                      admin=200)),
    "revoke the control share": ("post", "share-revoke", lambda c: {"pk": c.control_share.pk}, None,
                                 dict(owner=200, manage_reshare=404, manage=404, control=200, view=404, stranger=404,
                                      admin=200)),
    "rename group": ("patch", "group-detail", lambda c: {"pk": c.world.group.pk}, {"name": "Flat"},
                     dict(owner=200, manage_reshare=404, manage=404, control=404, view=403, stranger=404, admin=200)),
    "delete group": ("delete", "group-detail", lambda c: {"pk": c.world.group.pk}, None,
                     dict(owner=204, manage_reshare=404, manage=404, control=404, view=403, stranger=404, admin=204)),
    "share group": ("post", "group-shares", lambda c: {"group": c.world.group.pk},
                    lambda c: {"grantee": c.newcomer.email, "level": "view"},
                    dict(owner=201, manage_reshare=404, manage=404, control=404, view=403, stranger=404, admin=201)),
    "take device out of group": ("delete", "group-device", lambda c: {"group": c.world.group.pk,
                                                                       "device": c.world.lamp.pk}, None,
                                 dict(owner=204, manage_reshare=404, manage=404, control=404, view=403, stranger=404,
                                      admin=204)),
    "revoke the lock's credentials": ("post", "device-credentials-revoke", lock, None,
                                      dict(owner=200, manage_reshare=403, manage=403, control=403, view=403,
                                           stranger=404, admin=200)),
    "see the lock's live sessions": ("get", "device-sessions", lock, None,
                                     dict(owner=200, manage_reshare=403, manage=403, control=403, view=403,
                                          stranger=404, admin=200)),
    "end the lock's own session": ("delete", "device-session",
                                   lambda c: {"device": c.world.lock.pk, "client_id": c.world.lock.thing_name}, None,
                                   dict(owner=200, manage_reshare=403, manage=403, control=403, view=403,
                                        stranger=404, admin=200)),
    "sign out all my apps": ("post", "iot-credentials-revoke", lambda c: {}, None,
                             dict(owner=200, manage_reshare=200, manage=200, control=200, view=200, stranger=200,
                                  admin=200)),
    "revoke everything the control sharee holds": ("post", "member-revoke-access",
                                                   lambda c: {"user": c.users["control"].pk}, None,
                                                   dict(owner=404, manage_reshare=404, manage=404, control=403,
                                                        view=404, stranger=404, admin=200)),
    "read the owner's receipt": ("get", "receipt-detail", lambda c: {"pk": c.receipt.pk}, None,
                                 dict(owner=200, manage_reshare=404, manage=404, control=404, view=404, stranger=404,
                                      admin=200)),
}

# AWS IoT answers the sessions rows (a real gateway, its iot-data client stubbed).
AWS_IOT_ANSWERS = {
    "device-sessions": lambda plane, c: plane.expect_unknown(c.world.lock.thing_name),
    "device-session": lambda plane, c: plane.expect_delete(c.world.lock.thing_name),
}


def state():
    return (
        sorted(Device.objects.values_list("pk", "name", "owner_id", "group_id")),
        sorted(DeviceGroup.objects.values_list("pk", "name")),
        sorted(Share.objects.values_list("pk", "level", "revoked_at")),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_permission_matrix(world, client_for, monkeypatch, action, actor):
    cast = Cast(world)
    method, name, kwargs, body, expected = ACTIONS[action]
    plane = StubbedDataPlane()
    monkeypatch.setattr(iot, "gateway", lambda: plane.gateway)
    if name in AWS_IOT_ANSWERS:
        AWS_IOT_ANSWERS[name](plane, cast)
    plane.stub.activate()
    body = body(cast) if callable(body) else body
    before = state()
    response = getattr(client_for(cast.users[actor]), method)(tenant_url(name, world, **kwargs(cast)), body or {})
    assert response.status_code == expected[actor], response.content[:300]
    if response.status_code >= 400:
        assert response.json()["error"] in {"permission_denied", "not_found"}
        assert state() == before, "a refused request changed something"
    elif method != "get":
        assert state() != before, "an accepted write changed nothing"


def test_the_matrix_covers_every_actor_for_every_action():
    assert all(set(expected) == set(ACTORS) for *_, expected in ACTIONS.values())
