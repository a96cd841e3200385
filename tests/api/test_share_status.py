"""A share's status is one definition (devices/share_status.py): whatever the
API or the console renders as a share's status is what filtering by that
status returns, and the other way round."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Invitation, Level, Share
from devices.share_status import ShareStatus, share_status
from tests.factories import DeviceFactory, InvitationFactory, ShareFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shares(world):
    """Two of alice's shares in each status, on eight devices (one open share per device and grantee)."""
    now = timezone.now()
    windows = {
        ShareStatus.LIVE: [{}, {"starts_at": now - timedelta(days=1), "expires_at": now + timedelta(days=1)}],
        ShareStatus.SCHEDULED: [{"starts_at": now + timedelta(hours=1)},
                                {"starts_at": now + timedelta(days=1), "expires_at": now + timedelta(days=2)}],
        ShareStatus.EXPIRED: [{"expires_at": now - timedelta(minutes=1)},
                              {"starts_at": now - timedelta(days=2), "expires_at": now - timedelta(days=1)}],
        # Revoked wins over any window, even one still running.
        ShareStatus.REVOKED: [{"revoked_at": now - timedelta(hours=1)},
                              {"revoked_at": now - timedelta(hours=1), "expires_at": now - timedelta(days=1)}],
    }
    made = {}
    for status, terms in windows.items():
        for fields in terms:
            device = DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type)
            share = ShareFactory(device=device, grantee=world.alice, level=Level.VIEW, **fields)
            made[share.pk] = status
    return made


def listed(world, **query) -> dict[int, str]:
    client = APIClient()
    client.force_authenticate(world.alice)
    response = client.get(reverse("api:share-list", kwargs={"tenant": world.tenant.slug}), {"page_size": 100, **query})
    assert response.status_code == 200, response.content
    return {row["id"]: row["status"] for row in response.json()["results"]}


def test_every_state_renders_as_built(shares):
    assert {s.pk: share_status(s) for s in Share.objects.filter(pk__in=shares)} == shares


@pytest.mark.parametrize("status", ShareStatus.values)
def test_api_filter_by_a_status_returns_exactly_the_shares_rendered_with_it(world, shares, status):
    rows = listed(world, status=status)
    assert set(rows) == {pk for pk, rendered in shares.items() if rendered == status}
    assert set(rows.values()) == {status}


def test_active_is_live_and_scheduled_and_the_default(world, shares):
    active = {pk for pk, rendered in shares.items() if rendered in (ShareStatus.LIVE, ShareStatus.SCHEDULED)}
    assert set(listed(world, status="active")) == active
    assert set(listed(world)) == active
    assert set(listed(world, status="active").values()) == {"live", "scheduled"}  # never "expired"
    assert listed(world, status="all") == {pk: str(rendered) for pk, rendered in shares.items()}


def test_an_unknown_status_is_refused(world, shares):
    client = APIClient()
    client.force_authenticate(world.alice)
    response = client.get(reverse("api:share-list", kwargs={"tenant": world.tenant.slug}), {"status": "ended"})
    assert response.status_code == 400


@pytest.mark.parametrize("status", ShareStatus.values)
def test_console_filter_by_a_status_lists_exactly_the_shares_shown_with_it(client, world, shares, status):
    client.force_login(world.admin)
    response = client.get(reverse("admin:devices_share_changelist"), {"status": status})
    assert response.status_code == 200
    changelist = response.context["cl"]
    found = {share.pk: changelist.model_admin.status(share) for share in changelist.queryset}
    assert set(found) == {pk for pk, rendered in shares.items() if rendered == status}
    assert set(found.values()) == {ShareStatus(status).label}


@pytest.mark.parametrize("status", Invitation.Status.values)
def test_api_filter_by_an_invitation_status_returns_exactly_those_rendered_with_it(world, status):
    made = {}
    for state in Invitation.Status.values:
        device = DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type)
        made[InvitationFactory(device=device, email=f"{state}@example.test", status=state).pk] = state
    client = APIClient()
    client.force_authenticate(world.owner)
    response = client.get(reverse("api:tenant-invitation-list", kwargs={"tenant": world.tenant.slug}),
                          {"status": status, "page_size": 100})
    assert response.status_code == 200, response.content
    rows = {row["id"]: row["status"] for row in response.json()["results"]}
    assert set(rows) == {pk for pk, state in made.items() if state == status}
    assert set(rows.values()) == {status}
