"""The access-change hook (devices/access.py): receivers fan out, hear whether
access only widened or may have narrowed, and run inside the writer's transaction."""
import pytest
from django.db import connection

from devices import access, services
from devices.access import AccessChange
from devices.models import AuditEvent, Level, Share
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

WEEKDAYS = {"timezone": "Europe/Brussels",
            "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}]}
TUESDAYS = {"timezone": "Europe/Brussels", "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}


@pytest.fixture
def heard():
    """A second receiver next to the snapshot outbox, connected for one test."""
    changes: list[tuple[AccessChange, bool]] = []

    def receiver(change: AccessChange) -> None:
        changes.append((change, connection.in_atomic_block))

    access.connect(receiver)
    access.connect(receiver)  # idempotent: still heard once per change
    yield changes
    access.disconnect(receiver)


def test_a_second_receiver_hears_widening_and_narrowing_writes(world, heard):
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    assert [change for change, _ in heard] == [
        AccessChange(tenant_id=world.tenant.pk, users=frozenset({world.alice.pk}), devices=frozenset(), narrowed=False,
                     actor_id=world.owner.pk)
    ]
    heard.clear()
    services.revoke_share(actor=world.owner, share=share)
    assert [(change.users, change.narrowed) for change, _ in heard] == [(frozenset({world.alice.pk}), True)]


def test_transfer_removal_and_deactivation_revoke_tokens_and_nothing_else_does(world, heard):
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    services.revoke_share(actor=world.owner, share=share)
    assert not any(change.tokens_revoked for change, _ in heard)
    heard.clear()
    services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.alice)
    revoked = [(change.users, change.devices) for change, _ in heard if change.tokens_revoked]
    # The device's tokens go; the people who lost or gained it keep theirs.
    assert revoked == [(frozenset(), frozenset({world.lock.thing_name}))]
    heard.clear()
    root = UserFactory(is_superuser=True)
    services.set_user_active(actor=root, user=world.bob, is_active=False)
    assert {(change.users, change.tokens_revoked, change.actor_id) for change, _ in heard} == {
        (frozenset({world.bob.pk}), True, root.pk)}


@pytest.mark.parametrize("before, after, narrowed", [
    ({"level": Level.VIEW}, {"level": "control"}, False),
    ({"level": Level.CONTROL}, {"level": "view"}, True),
    ({"level": Level.MANAGE, "can_reshare": True}, {"can_reshare": False}, True),
    ({"level": Level.VIEW}, {"expires_at": None}, False),
    # Weekly schedules (docs/sharing.md#weekly-schedules): fewer hours narrow, more widen.
    ({"level": Level.VIEW}, {"schedule": WEEKDAYS}, True),
    ({"level": Level.VIEW, "schedule": WEEKDAYS}, {"schedule": TUESDAYS}, True),
    ({"level": Level.VIEW, "schedule": TUESDAYS}, {"schedule": WEEKDAYS}, False),
    ({"level": Level.VIEW, "schedule": TUESDAYS}, {"schedule": {**TUESDAYS, "timezone": "Europe/Paris"}}, True),
    ({"level": Level.VIEW, "schedule": TUESDAYS}, {"schedule": None}, False),
])
def test_an_update_is_narrowing_only_when_it_gives_less(world, heard, before, after, narrowed):
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, **before)
    heard.clear()
    services.update_share(actor=world.owner, share=share, **after)
    assert [change.narrowed for change, _ in heard] == [narrowed]


def test_device_lifecycle_reports_its_direction(world, heard):
    device = services.register_device(actor=world.alice, tenant=world.tenant, name="Kettle", device_type=world.type)
    assert [(change.devices, change.narrowed) for change, _ in heard] == [(frozenset({device.thing_name}), False)]
    heard.clear()
    services.delete_device(actor=world.alice, device=device)
    assert [(change.devices, change.narrowed) for change, _ in heard] == [(frozenset({device.thing_name}), True)]


@pytest.mark.django_db(transaction=True)  # no test-wide transaction: only the writer's own one is open
def test_receivers_run_inside_the_writers_transaction(world, heard):
    assert not connection.in_atomic_block
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    assert heard and all(in_transaction for _, in_transaction in heard)


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_raises_rolls_the_write_back(world):
    def refuse(change: AccessChange) -> None:
        raise RuntimeError("receiver down")

    events = AuditEvent.objects.count()
    access.connect(refuse)
    try:
        with pytest.raises(RuntimeError, match="receiver down"):
            services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    finally:
        access.disconnect(refuse)
    assert not Share.objects.filter(grantee=world.alice).exists()
    assert AuditEvent.objects.count() == events


def test_reporting_with_nobody_listening_is_an_error(world, monkeypatch):
    monkeypatch.setattr(access, "_receivers", [])
    with pytest.raises(RuntimeError, match="No outbox listens"):
        access.changed(actor=None, tenant_id=world.tenant.pk, users=[world.alice.pk], narrowed=False)
    access.changed(actor=None, tenant_id=world.tenant.pk, narrowed=False)  # nothing changed: nothing to report
