"""Two tenants, every endpoint: nobody reaches the other tenant's data.

The endpoints are discovered by walking the URL resolver for the ``api``
namespace, and ``ENDPOINTS`` must name every one of them with every method
its view answers, so an endpoint added without an entry here fails
``test_every_endpoint_and_method_is_covered``.
"""
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from authz.live import services as live
from authz.models import AccessReceipt, IssuedCredential, TokenCutoff
from devices import services
from devices.models import AuditEvent, Device, DeviceGroup, Invitation, Level, Membership, Share
from tests.support.api import url


@dataclass
class Endpoint:
    methods: dict  # method -> request body builder (world -> dict) or None
    objects: object = None  # world -> path kwargs naming that world's objects
    scope: str = "tenant"  # tenant | personal | public | fallback
    note: str = ""
    extra: dict = field(default_factory=dict)


def none(world):
    return {}


def preview_at() -> str:
    return (timezone.now() + timedelta(days=2)).isoformat()


def device(world):
    return {"device": world.lock.pk}


ENDPOINTS = {
    # Unscoped: they hold no tenant data; listed so that the table stays complete.
    "token-obtain": Endpoint({"post": None}, scope="public", note="sign-in; answers only about the credentials sent"),
    "token-refresh": Endpoint({"post": None}, scope="public", note="needs a refresh token; tenant-free"),
    "logout": Endpoint({"post": None}, scope="public", note="needs a refresh token; tenant-free"),
    "not-found": Endpoint({"get": None}, scope="fallback", note="answers 404 to anything"),
    # The caller's own data across tenants.
    "me": Endpoint({"get": None}, scope="personal"),
    "tenant-list": Endpoint({"get": None}, scope="personal"),
    "invitation-list": Endpoint({"get": None}, scope="personal"),
    "invitation-accept": Endpoint({"post": None}, objects=lambda w: {"pk": w.invitation_to_member.pk},
                                  scope="personal"),
    "invitation-decline": Endpoint({"post": None}, objects=lambda w: {"pk": w.invitation_to_member.pk},
                                   scope="personal"),
    # Tenant paths.
    "tenant-detail": Endpoint({"get": None}, objects=none),
    "device-type-list": Endpoint({"get": None}, objects=none),
    "device-list": Endpoint({"get": None, "post": lambda w: {"name": "X", "device_type": w.type.slug}}, objects=none),
    "device-detail": Endpoint({"get": None, "patch": lambda w: {"name": "Renamed"}, "delete": None},
                              objects=lambda w: {"pk": w.lock.pk}),
    "device-transfer": Endpoint({"post": lambda w: {"new_owner": w.bob.email}}, objects=device),
    "device-access": Endpoint({"get": lambda w: {"at": preview_at()}}, objects=device,
                              note="with ?at= (docs/api.md): a preview names the device too"),
    "device-access-list": Endpoint({"get": None}, objects=device),
    "device-audit": Endpoint({"get": None}, objects=device),
    "device-shares": Endpoint({"get": None, "post": lambda w: {"grantee": w.bob.email, "level": "view"}},
                              objects=device),
    "group-list": Endpoint({"get": None, "post": lambda w: {"name": "New"}}, objects=none),
    "group-detail": Endpoint({"get": None, "patch": lambda w: {"name": "Renamed"}, "delete": None},
                             objects=lambda w: {"pk": w.group.pk}),
    "group-devices": Endpoint({"post": lambda w: {"device": w.lock.pk}}, objects=lambda w: {"group": w.group.pk}),
    "group-device": Endpoint({"delete": None}, objects=lambda w: {"group": w.group.pk, "device": w.lamp.pk}),
    "group-shares": Endpoint({"get": None, "post": lambda w: {"grantee": w.bob.email, "level": "view"}},
                             objects=lambda w: {"group": w.group.pk}),
    "share-list": Endpoint({"get": None}, objects=none),
    "share-detail": Endpoint({"get": None, "patch": lambda w: {"level": "control"}},
                             objects=lambda w: {"pk": w.share.pk}),
    "share-revoke": Endpoint({"post": None}, objects=lambda w: {"pk": w.share.pk}),
    "tenant-invitation-list": Endpoint({"get": None}, objects=none),
    "invitation-cancel": Endpoint({"post": None}, objects=lambda w: {"pk": w.invitation.pk}),
    "iot-credentials": Endpoint({"post": lambda w: {"scope": {"devices": [w.lock.pk]}}}, objects=none),
    "device-credentials": Endpoint({"post": None}, objects=device),
    "iot-credentials-revoke": Endpoint({"post": None}, objects=none),
    "device-credentials-revoke": Endpoint({"post": None}, objects=device),
    "device-sessions": Endpoint({"get": None}, objects=device),
    "device-session": Endpoint({"delete": None},
                               objects=lambda w: {"device": w.lock.pk, "client_id": w.lock.thing_name}),
    "member-revoke-access": Endpoint({"post": None}, objects=lambda w: {"user": w.bob.pk}),
    "receipt-detail": Endpoint({"get": None}, objects=lambda w: {"pk": w.receipt.pk}),
}


def api_patterns():
    """(name, view class) for every route in the api namespace."""
    prefix, resolver = get_resolver().namespace_dict["api"]
    found = []

    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                found.append((pattern.name, pattern.callback.view_class))

    walk(resolver.url_patterns)
    return found


def answered_methods(view_class) -> set[str]:
    allowed = set(view_class.http_method_names) - {"head", "options", "trace"}
    if view_class.__name__ == "NotFoundView":
        return {"get"}
    return {m for m in allowed if hasattr(view_class, m)}


def test_every_endpoint_and_method_is_covered():
    discovered = api_patterns()
    names = [name for name, _ in discovered]
    assert all(names), "every API route needs a name"
    assert len(names) == len(set(names))
    assert set(names) == set(ENDPOINTS), "add new endpoints to ENDPOINTS (and so to the isolation test)"
    for name, view_class in discovered:
        assert answered_methods(view_class) == set(ENDPOINTS[name].methods), name


# --- the two tenants ------------------------------------------------------------------


def populate(world):
    """Give a world a share, invitations, a receipt and audit history to aim at."""
    world.share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    world.invitation = services.create_invitation(actor=world.owner, email=f"new@{world.tenant.slug}.test",
                                                  device=world.lamp, level=Level.VIEW)
    world.invitation_to_member = services.create_invitation(actor=world.owner, email=world.carol.email,
                                                            device=world.lamp, level=Level.CONTROL)
    live.sign_out_apps(actor=world.admin, tenant=world.tenant)
    world.receipt = AccessReceipt.objects.get(tenant=world.tenant, actor=world.admin)
    return world


def fingerprint():
    """Everything a request could change, in a comparable form."""
    return (
        sorted(Device.objects.values_list("pk", "name", "owner_id", "group_id")),
        sorted(DeviceGroup.objects.values_list("pk", "name")),
        sorted(Share.objects.values_list("pk", "level", "revoked_at", "expires_at", "can_reshare")),
        sorted(Invitation.objects.values_list("pk", "status")),
        sorted(Membership.objects.values_list("pk", "role")),
        AuditEvent.objects.count(),
        IssuedCredential.objects.count(),
        sorted(TokenCutoff.objects.values_list("pk", "not_before")),
        AccessReceipt.objects.count(),
    )


def cases():
    for name, endpoint in ENDPOINTS.items():
        if endpoint.scope == "tenant":
            for method in endpoint.methods:
                yield pytest.param(name, method, id=f"{name}-{method}")


def call(client, method, path, body):
    return getattr(client, method)(path, body or {}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("name, method", list(cases()))
def test_tenant_endpoint_is_closed_to_the_other_tenant(world, other, client_for, name, method):
    populate(world)
    populate(other)
    endpoint = ENDPOINTS[name]
    build = endpoint.methods[method]
    before = fingerprint()
    attempts = []
    # Members (and admins) of B aim at A's tenant and A's objects.
    for intruder in (other.owner, other.admin, other.alice):
        path = url(name, tenant=world.tenant.slug, **endpoint.objects(world))
        attempts.append((intruder, path, build(world) if build else None))
    # A's own people aim at B, through B's slug and through their own.
    for insider in (world.owner, world.admin):
        attempts.append((insider, url(name, tenant=other.tenant.slug, **endpoint.objects(other)),
                         build(other) if build else None))
        if endpoint.objects(other):
            attempts.append((insider, url(name, tenant=world.tenant.slug, **endpoint.objects(other)),
                             build(world) if build else None))
    for user, path, body in attempts:
        response = call(client_for(user), method, path, body)
        assert response.status_code == 404, (user.email, method, path, response.status_code, response.content[:300])
        assert response.json()["error"] == "not_found"
    assert fingerprint() == before


@pytest.mark.django_db
@pytest.mark.parametrize("at", [None, "2027-03-30T10:00:00", "not a time", "2099-01-01T00:00:00Z"])
def test_an_access_preview_of_the_other_tenants_device_is_404_whatever_the_instant(world, other, client_for, at):
    """Visibility is decided before `?at=` is read: a bad or far instant
    answers 404 for a device one cannot see, never a 400 that would confirm it."""
    for intruder in (other.owner, other.admin):
        path = url("device-access", tenant=world.tenant.slug, device=world.lock.pk)
        response = client_for(intruder).get(path, {} if at is None else {"at": at})
        assert response.status_code == 404 and response.json()["error"] == "not_found", response.content
        own_path = url("device-access", tenant=other.tenant.slug, device=world.lock.pk)
        assert client_for(intruder).get(own_path, {"at": preview_at()}).status_code == 404


@pytest.mark.django_db
def test_personal_endpoints_show_only_ones_own(world, other, client_for):
    populate(world)
    populate(other)
    client = client_for(other.carol)
    me = client.get(url("me")).json()
    assert [m["tenant"]["slug"] for m in me["memberships"]] == ["globex"]
    assert [t["slug"] for t in client.get(url("tenant-list")).json()["results"]] == ["globex"]
    invitations = client.get(url("invitation-list")).json()["results"]
    assert [i["id"] for i in invitations] == [other.invitation_to_member.pk]
    before = fingerprint()
    for name in ("invitation-accept", "invitation-decline"):
        response = client.post(url(name, pk=world.invitation_to_member.pk))
        assert response.status_code == 404, (name, response.content)
    assert fingerprint() == before


def test_unscoped_endpoints_are_the_expected_few():
    unscoped = {name for name, e in ENDPOINTS.items() if e.scope in {"public", "fallback"}}
    assert unscoped == {"token-obtain", "token-refresh", "logout", "not-found"}
