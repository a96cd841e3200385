"""The issuing service's own refusals, below the API: whoever calls it (the
API, the console, `manage.py authorize`) gets the same checks."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from authz import checks
from authz.models import IssuedCredential
from authz.tokens import credentials, rotation
from devices import services
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def active_key(table):
    rotation.rotate(actor=None)


def test_only_active_members_get_a_token_for_their_app(world, other):
    with pytest.raises(PermissionDenied):
        credentials.issue_user_credentials(actor=other.alice, tenant=world.tenant)
    services.set_user_active(actor=UserFactory(is_superuser=True), user=world.alice, is_active=False)
    with pytest.raises(PermissionDenied):
        credentials.issue_user_credentials(actor=world.alice, tenant=world.tenant)
    assert not IssuedCredential.objects.exists()


def test_a_scope_stays_inside_the_tenant(world, other):
    for kwargs in ({"scope_devices": [world.lamp, other.lock]}, {"scope_group": other.group},
                   {"scope_devices": [world.lamp], "scope_group": world.group}, {"scope_devices": []}):
        with pytest.raises(ValidationError) as refused:
            credentials.issue_user_credentials(actor=world.owner, tenant=world.tenant, **kwargs)
        assert "scope" in refused.value.message_dict
    assert not IssuedCredential.objects.exists()


def test_device_tokens_only_for_owner_or_tenant_admin(world, other):
    for actor in (world.alice, other.admin):
        with pytest.raises(PermissionDenied):
            credentials.issue_device_credentials(actor=actor, device=world.lamp)
    issued = credentials.issue_device_credentials(actor=world.admin, device=world.lamp)
    assert issued.client_id == world.lamp.thing_name
    assert IssuedCredential.objects.get().principal == world.lamp.thing_name


@pytest.mark.parametrize("name, value, ok", [
    ("USER_TOKEN_LIFETIME_SECONDS", 600, True),
    ("USER_TOKEN_LIFETIME_SECONDS", 599, False),
    ("DEVICE_TOKEN_LIFETIME_SECONDS", 31 * 86400, True),
    ("DEVICE_TOKEN_LIFETIME_SECONDS", 31 * 86400 + 1, False),
    ("IOT_TOKEN_KEY_NAME", "devshare token", False),
    ("AWS_ACCOUNT_ID", "12345678901", False),
])
def test_settings_the_authorizer_would_refuse_fail_the_system_check(settings, name, value, ok):
    setattr(settings, name, value)
    errors = checks.token_settings(None)
    assert (errors == []) is ok, errors


def test_the_token_stays_out_of_repr(world):
    issued = credentials.issue_user_credentials(actor=world.owner, tenant=world.tenant)
    assert issued.client_id in repr(issued)
    assert issued.token not in repr(issued) and issued.token_signature not in repr(issued)


def test_an_inactive_owner_cannot_issue_device_tokens(world):
    services.set_user_active(actor=UserFactory(is_superuser=True), user=world.owner, is_active=False)
    world.owner.refresh_from_db()
    with pytest.raises(PermissionDenied):
        credentials.issue_device_credentials(actor=world.owner, device=world.lamp)
