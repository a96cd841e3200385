"""The live-access core below the live tests (docs/live-access.md): the
disconnect outbox, running cuts, receipts, the sweep of ended shares and
token cut-offs, against PostgreSQL, with iot-data behind botocore's Stubber
(which checks every DeleteConnection against AWS's own API model).

Writes here are not committed (one test transaction), so nothing is pushed
or cut unless a test says so: `push_lagging()` writes the snapshots to the
test's moto table, `cut.run` runs the cuts."""
import threading
from datetime import UTC, datetime, timedelta

import boto3
import jwt
import pytest
from botocore.stub import Stubber
from django.db import connection, transaction
from django.utils import timezone

from authz.live import cut, cutoffs, receipts, sweep
from authz.live import outbox as cut_outbox
from authz.models import AccessReceipt, PrincipalSync, SessionCut, ShareSweep, TokenCutoff
from authz.snapshots.push import push
from authz.tokens import credentials, iot, rotation, simulator
from devices import services
from devices.audit_actions import Action
from devices.models import AuditEvent, Level, Membership
from lambda_bridge import snapshot
from lambda_bridge.snapshot import DEVICE, USER
from tests.factories import ShareFactory, UserFactory

pytestmark = pytest.mark.django_db

DATA_ENDPOINT = "https://data.iot.test"


class DataPlane:
    """A gateway whose iot-data client is stubbed: every expected request
    must be made, with exactly these parameters, in this order."""

    def __init__(self, stub: Stubber, gateway: iot.IotGateway):
        self.stub, self.gateway = stub, gateway

    def closes(self, *client_ids: str) -> None:
        for client_id in client_ids:
            self.stub.add_response("delete_connection", {}, self._params(client_id))

    def not_connected(self, client_id: str) -> None:
        self.stub.add_client_error("delete_connection", "ResourceNotFoundException", "No connection found",
                                   http_status_code=404, expected_params=self._params(client_id))

    def throttles(self, client_id: str) -> None:
        self.stub.add_client_error("delete_connection", "ThrottlingException", "Rate exceeded",
                                   http_status_code=429, expected_params=self._params(client_id))

    @staticmethod
    def _params(client_id: str) -> dict:
        # The session and the will were authorized under the grants just taken away.
        return {"clientId": client_id, "cleanSession": True, "preventWillMessage": True}


@pytest.fixture
def data_plane(monkeypatch):
    """IOT_DATA_ENDPOINT_URL stays empty, so no cut is queued on a commit:
    the tests run them with `cut.run` (docs/live-access.md#the-disconnect-outbox)."""
    client = boto3.client("iot-data", region_name="us-east-1", endpoint_url=DATA_ENDPOINT,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    gateway = iot.IotGateway(client=None, data_client=client)
    monkeypatch.setattr(iot, "gateway", lambda: gateway)
    with Stubber(client) as stub:
        yield DataPlane(stub, gateway)
        stub.assert_no_pending_responses()


@pytest.fixture
def keys(table):
    """An active signing key, published to the test's table."""
    rotation.rotate(actor=None)


def share(world, grantee, level=Level.CONTROL, **target):
    return services.create_share(actor=world.owner, grantee=grantee, level=level, **(target or {"device": world.lock}))


def cut_versions() -> dict[tuple, int]:
    return {(r.tenant_id, r.kind, r.principal): r.desired_version for r in SessionCut.objects.all()}


def cuts_bumped_by(action) -> set[tuple]:
    before = cut_versions()
    action()
    return {key for key, version in cut_versions().items() if version > before.get(key, 0)}


def person(world, *people) -> set[tuple]:
    return {(world.tenant.pk, USER, str(p.pk)) for p in people}


def thing(world, device) -> set[tuple]:
    return {(world.tenant.pk, DEVICE, device.thing_name)}


def cut_of(world, principal) -> SessionCut:
    if isinstance(principal, str):
        return SessionCut.objects.get(tenant=world.tenant, kind=DEVICE, principal=principal)
    return SessionCut.objects.get(tenant=world.tenant, kind=USER, principal=str(principal.pk))


def sync_of(world, user) -> PrincipalSync:
    return PrincipalSync.objects.get(tenant=world.tenant, kind=USER, principal=str(user.pk))


def push_lagging() -> None:
    """Write every lagging snapshot to the table, as the push task would."""
    result = push(list(PrincipalSync.objects.lagging().values_list("pk", flat=True)))
    assert not result.retryable


def app_token(world, user, **kwargs) -> credentials.Credentials:
    return credentials.issue_user_credentials(actor=user, tenant=world.tenant, **kwargs)


# --- the outbox ---------------------------------------------------------------------------


def test_a_narrowing_pins_its_cut_to_the_snapshot_version_it_made(world):
    granted = share(world, world.alice)
    services.revoke_share(actor=world.owner, share=granted)
    row = cut_of(world, world.alice)
    assert row.snapshot_version == sync_of(world, world.alice).desired_version
    assert row.pushed_version < row.desired_version
    # Not ready: that snapshot is not in DynamoDB yet.
    assert not SessionCut.objects.ready().exists()


def test_a_later_narrowing_moves_the_cut_and_its_snapshot_forward_never_back(world):
    first, second = share(world, world.alice), share(world, world.alice, device=world.lamp)
    services.revoke_share(actor=world.owner, share=first)
    # A cut row from a clock far ahead (a restored database): the next bump still goes above it.
    SessionCut.objects.update(desired_version=10**17, snapshot_version=10**17)
    services.revoke_share(actor=world.owner, share=second)
    row = cut_of(world, world.alice)
    assert row.desired_version == 10**17 + 1
    assert row.snapshot_version == 10**17  # the snapshot version never moves back


def test_record_returns_the_version_each_cut_got(world):
    granted = share(world, world.alice)
    with transaction.atomic():
        services.revoke_share(actor=world.owner, share=granted)
    row = cut_of(world, world.alice)
    with transaction.atomic():
        ids = [sync_of(world, world.alice).pk]
        got = cut_outbox.record(snapshot_ids=ids)
    row.refresh_from_db()
    assert got == {row.pk: row.desired_version}


@pytest.mark.parametrize("widen", ["create_share", "add_member", "update_share_widening", "add_to_shared_group"])
def test_widening_never_bumps_a_cut(world, other, widen):
    granted = share(world, world.alice, Level.VIEW)
    group_share = share(world, world.bob, Level.VIEW, group=world.group)
    services.revoke_share(actor=world.owner, share=share(world, world.carol))  # cut rows exist for someone
    assert group_share.pk and SessionCut.objects.exists()
    # Someone removed earlier (so with a cut row of their own) is let back in.
    root = UserFactory(is_superuser=True)
    returning = UserFactory(email="back@acme.test")
    services.remove_member(actor=root, membership=services.add_member(actor=root, tenant=world.tenant,
                                                                      user=returning))
    action = {
        "create_share": lambda: share(world, world.alice, device=world.lamp),
        "add_member": lambda: services.add_member(actor=root, tenant=world.tenant, user=returning),
        "update_share_widening": lambda: services.update_share(actor=world.owner, share=granted,
                                                               level=Level.MANAGE),
        "add_to_shared_group": lambda: services.add_device_to_group(actor=world.owner, group=world.group,
                                                                    device=world.lock),
    }[widen]
    assert cuts_bumped_by(action) == set()


def test_every_narrowing_write_bumps_the_cuts_of_whoever_lost_something(world, other, settings):
    granted = share(world, world.alice)
    assert cuts_bumped_by(lambda: services.revoke_share(actor=world.owner, share=granted)) == person(
        world, world.alice)

    narrowed = share(world, world.alice, Level.MANAGE)
    assert person(world, world.alice) <= cuts_bumped_by(
        lambda: services.update_share(actor=world.owner, share=narrowed, level=Level.VIEW))

    share(world, world.bob, Level.VIEW, group=world.group)
    assert person(world, world.bob) <= cuts_bumped_by(
        lambda: services.remove_device_from_group(actor=world.owner, device=world.lamp))

    share(world, world.carol, Level.VIEW, device=world.lamp)
    moved = cuts_bumped_by(lambda: services.transfer_device(actor=world.owner, device=world.lamp,
                                                            new_owner=world.bob))
    assert thing(world, world.lamp) | person(world, world.owner, world.carol) <= moved

    share(world, world.carol, Level.VIEW, device=world.lock)
    assert thing(world, world.lock) | person(world, world.owner, world.carol) <= cuts_bumped_by(
        lambda: services.delete_device(actor=world.owner, device=world.lock))

    membership = Membership.objects.get(tenant=world.tenant, user=world.alice)
    assert cuts_bumped_by(lambda: services.remove_member(actor=world.admin, membership=membership)) == person(
        world, world.alice)

    root = UserFactory(is_superuser=True)
    assert cuts_bumped_by(lambda: services.set_user_active(actor=root, user=world.carol, is_active=False)) == person(
        world, world.carol)
    # Another tenant's people are untouched by all of it.
    assert not SessionCut.objects.filter(tenant=other.tenant).exists()


def test_a_share_ending_by_itself_bumps_its_grantee_at_the_sweep(world):
    now = timezone.now()
    ShareFactory(tenant=world.tenant, device=world.lock, grantee=world.alice, created_by=world.owner,
                 expires_at=now + timedelta(seconds=30))
    assert cuts_bumped_by(lambda: sweep.sweep_ended_shares(now=now)) == set()
    assert cuts_bumped_by(lambda: sweep.sweep_ended_shares(now=now + timedelta(seconds=31))) == person(
        world, world.alice)


# --- running cuts ---------------------------------------------------------------------------


def test_a_cut_waits_for_its_snapshot_then_closes_every_live_token_of_the_principal(world, keys, data_plane):
    granted = share(world, world.alice)
    phone, browser = app_token(world, world.alice), app_token(world, world.alice)
    app_token(world, world.alice, lifetime=credentials.MIN_LIFETIME_SECONDS,
              now=timezone.now() - timedelta(hours=1))  # expired: nothing can be connected with it
    app_token(world, world.bob)  # someone else's
    services.revoke_share(actor=world.owner, share=granted)
    row = cut_of(world, world.alice)

    waited = cut.run([row.pk], gateway=data_plane.gateway)  # the Stubber has nothing queued: no call may happen
    assert waited.waiting == [row.pk] and waited.done == []

    push_lagging()
    data_plane.closes(*sorted([phone.client_id, browser.client_id]))
    ran = cut.run([row.pk], gateway=data_plane.gateway)
    assert ran.done == [row.pk]
    assert sorted(ran.closed[row.pk]) == sorted([phone.client_id, browser.client_id])
    row.refresh_from_db()
    assert row.in_sync


def test_a_device_cut_closes_its_thing_name_whoever_issued_its_token(world, keys, data_plane):
    services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.bob)
    push_lagging()
    row = cut_of(world, world.lamp.thing_name)
    data_plane.closes(world.lamp.thing_name)
    assert cut.run([row.pk], gateway=data_plane.gateway).closed == {row.pk: [world.lamp.thing_name]}


def test_a_client_that_is_not_connected_counts_as_done_with_nothing_closed(world, keys, data_plane):
    granted = share(world, world.alice)
    phone = app_token(world, world.alice)
    with receipts.collecting() as found:
        services.revoke_share(actor=world.owner, share=granted)
    push_lagging()
    row = cut_of(world, world.alice)
    data_plane.not_connected(phone.client_id)
    ran = cut.run([row.pk], gateway=data_plane.gateway)
    assert ran.done == [row.pk] and ran.closed == {row.pk: []}
    receipt = AccessReceipt.objects.get(pk=found[0].pk)
    assert receipt.done and receipt.closed == 0


def test_a_throttled_cut_backs_off_stays_lagging_and_converges_on_retry(world, keys, data_plane):
    granted = share(world, world.alice)
    phone = app_token(world, world.alice)
    with receipts.collecting() as found:
        services.revoke_share(actor=world.owner, share=granted)
    push_lagging()
    row = cut_of(world, world.alice)

    data_plane.throttles(phone.client_id)
    before = timezone.now()
    failed = cut.run([row.pk], gateway=data_plane.gateway)
    assert list(failed.failed) == [row.pk] and "ThrottlingException" in failed.failed[row.pk]
    row.refresh_from_db()
    assert not row.in_sync and row.attempts == 1 and "ThrottlingException" in row.last_error
    assert row.retry_after is not None and row.retry_after >= before
    assert not AccessReceipt.objects.get(pk=found[0].pk).done

    data_plane.closes(phone.client_id)
    assert cut.run([row.pk], gateway=data_plane.gateway).done == [row.pk]
    row.refresh_from_db()
    receipt = AccessReceipt.objects.get(pk=found[0].pk)
    assert row.in_sync and row.attempts == 0 and row.last_error == ""
    assert receipt.done and receipt.client_ids == [phone.client_id]


@pytest.mark.django_db(transaction=True)  # each revoke its own committed transaction, its own receipt
def test_a_narrowing_during_a_cut_leaves_the_row_lagging_for_the_next_one(world, keys, data_plane):
    first, second = share(world, world.alice), share(world, world.alice, device=world.lamp)
    phone = app_token(world, world.alice)
    with receipts.collecting() as earlier:
        services.revoke_share(actor=world.owner, share=first)
    push_lagging()
    row = cut_of(world, world.alice)
    later: list = []

    def narrow_meanwhile(**_):
        # While DeleteConnection is on its way, another revoke of the same person commits.
        with receipts.collecting() as found:
            services.revoke_share(actor=world.owner, share=second)
        later.extend(found)

    data_plane.gateway.data_client.meta.events.register_first(
        "provide-client-params.iot-data.DeleteConnection", narrow_meanwhile)
    data_plane.closes(phone.client_id)
    cut.run([row.pk], gateway=data_plane.gateway)

    row.refresh_from_db()
    assert not row.in_sync
    assert AccessReceipt.objects.get(pk=earlier[0].pk).done
    assert not AccessReceipt.objects.get(pk=later[0].pk).done


# --- receipts ---------------------------------------------------------------------------


def test_one_receipt_per_transaction_and_tenant_however_many_narrowings(world, other):
    shares = [share(world, p) for p in (world.alice, world.bob, world.carol)]
    foreign = services.create_share(actor=other.owner, grantee=other.alice, device=other.lock, level=Level.VIEW)
    with receipts.collecting() as found, transaction.atomic():
        for each in shares:
            services.revoke_share(actor=world.owner, share=each)
        services.revoke_share(actor=other.owner, share=foreign)
    assert sorted(r.tenant_id for r in found) == sorted([world.tenant.pk, other.tenant.pk])
    ours = AccessReceipt.objects.get(tenant=world.tenant)
    assert {item.cut.principal for item in ours.items.select_related("cut")} == {
        str(p.pk) for p in (world.alice, world.bob, world.carol)}
    assert ours.actor == world.owner and not ours.done


def test_a_rolled_back_savepoint_leaves_no_receipt_and_no_marker(world):
    granted, kept = share(world, world.alice), share(world, world.bob)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.revoke_share(actor=world.owner, share=granted)
        raise RuntimeError("the write fails after the narrowing")
    assert not AccessReceipt.objects.exists()
    with receipts.collecting() as found:
        services.revoke_share(actor=world.owner, share=kept)
    # A new receipt, not one joined from the rolled-back write.
    assert [r.pk for r in found] == list(AccessReceipt.objects.values_list("pk", flat=True))
    assert AccessReceipt.objects.get().items.get().cut.principal == str(world.bob.pk)


def test_settle_finishes_a_receipt_only_when_all_its_cuts_ran_and_audits_it(world, keys, data_plane):
    first, second = share(world, world.alice), share(world, world.bob)
    alices, bobs = app_token(world, world.alice), app_token(world, world.bob)
    with receipts.collecting() as found, transaction.atomic():
        services.revoke_share(actor=world.owner, share=first)
        services.revoke_share(actor=world.owner, share=second)
    push_lagging()
    receipt = found[0]

    data_plane.closes(alices.client_id)
    cut.run([cut_of(world, world.alice).pk], gateway=data_plane.gateway)
    receipt.refresh_from_db()
    assert not receipt.done
    assert not AuditEvent.objects.filter(action=Action.SESSIONS_CLOSE).exists()

    data_plane.closes(bobs.client_id)
    cut.run([cut_of(world, world.bob).pk], gateway=data_plane.gateway)
    receipt.refresh_from_db()
    assert receipt.done and receipt.closed == 2
    assert sorted(receipt.client_ids) == sorted([alices.client_id, bobs.client_id])
    event = AuditEvent.objects.get(action=Action.SESSIONS_CLOSE)
    assert event.actor == world.owner and event.tenant == world.tenant
    assert event.changes["closed"] == 2 and event.changes["receipt"] == receipt.pk


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_transactions_get_two_receipts_on_one_cut(world):
    first, second = share(world, world.alice), share(world, world.alice, device=world.lamp)
    ready = threading.Barrier(2)
    made, errors = {}, []

    def revoke(name, granted):
        try:
            with receipts.collecting() as found, transaction.atomic():
                ready.wait(10)
                services.revoke_share(actor=world.owner, share=granted)
            made[name] = [r.pk for r in found]
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=revoke, args=(n, s)) for n, s in (("first", first), ("second", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(made["first"]) == len(made["second"]) == 1 and made["first"] != made["second"]
    row = cut_of(world, world.alice)
    for pk in (*made["first"], *made["second"]):
        assert [item.cut_id for item in AccessReceipt.objects.get(pk=pk).items.all()] == [row.pk]


@pytest.mark.django_db(transaction=True)
def test_collecting_hands_the_view_its_committed_receipt(world):
    granted = share(world, world.alice)
    with receipts.collecting() as found:
        services.revoke_share(actor=world.owner, share=granted)
    assert [r.pk for r in found] == list(AccessReceipt.objects.values_list("pk", flat=True))
    assert found[0].actor_id == world.owner.pk


# --- the sweep ---------------------------------------------------------------------------


def ends_at(world, grantee, when):
    return ShareFactory(tenant=world.tenant, device=world.lock, grantee=grantee, created_by=world.owner,
                        level=Level.VIEW, expires_at=when)


def test_each_share_end_is_reported_exactly_once_across_sweeps(world):
    now = timezone.now()
    ends_at(world, world.alice, now + timedelta(seconds=10))
    assert sweep.sweep_ended_shares(now=now) == 0
    assert sweep.sweep_ended_shares(now=now + timedelta(seconds=11)) == 1
    version = cut_of(world, world.alice).desired_version
    for later in (12, 20, 60):
        assert sweep.sweep_ended_shares(now=now + timedelta(seconds=later)) == 0
    assert cut_of(world, world.alice).desired_version == version
    assert ShareSweep.objects.get().swept_until == now + timedelta(seconds=60)


def test_shares_ending_in_the_same_second_in_two_tenants_both_count(world, other):
    now = timezone.now()
    edge = now + timedelta(seconds=5)
    ends_at(world, world.alice, edge)
    ShareFactory(tenant=other.tenant, device=other.lock, grantee=other.alice, created_by=other.owner,
                 level=Level.VIEW, expires_at=edge)
    sweep.sweep_ended_shares(now=now)
    with receipts.collecting() as found:
        assert sweep.sweep_ended_shares(now=edge) == 2
    assert cut_of(world, world.alice) and cut_of(other, other.alice)
    assert sorted(r.tenant_id for r in found) == sorted([world.tenant.pk, other.tenant.pk])
    assert all(r.actor_id is None for r in found)  # the platform, not a person, ended them


def test_a_sweep_after_a_long_gap_looks_back_no_further_than_the_lookback(world, settings):
    now = timezone.now()
    lookback = timedelta(seconds=settings.SNAPSHOT_SWEEP_LOOKBACK_SECONDS)
    ShareSweep.objects.create(swept_until=now - timedelta(days=1))
    ends_at(world, world.alice, now - lookback - timedelta(seconds=1))
    ends_at(world, world.bob, now - lookback + timedelta(seconds=1))
    assert sweep.sweep_ended_shares(now=now) == 1
    assert {r.principal for r in SessionCut.objects.all()} == {str(world.bob.pk)}


# --- cut-offs ---------------------------------------------------------------------------


def test_cutoffs_only_move_forward(world):
    base = datetime(2026, 12, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    cutoffs.set_cutoffs(tenant_id=world.tenant.pk, users=[world.alice.pk], now=base)
    first = TokenCutoff.objects.get().not_before
    assert first == datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)  # the whole second after the write
    cutoffs.set_cutoffs(tenant_id=world.tenant.pk, users=[world.alice.pk], now=base - timedelta(minutes=5))
    assert TokenCutoff.objects.get().not_before == first
    cutoffs.set_cutoffs(tenant_id=world.tenant.pk, users=[world.alice.pk], now=base + timedelta(seconds=3))
    assert TokenCutoff.objects.get().not_before == datetime(2026, 12, 1, 10, 0, 4, tzinfo=UTC)


def test_a_token_issued_in_the_second_of_a_cutoff_is_dated_at_it(world, keys):
    services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.bob)
    cutoff = TokenCutoff.objects.get(tenant=world.tenant, kind=DEVICE, principal=world.lamp.thing_name)
    issued = credentials.issue_device_credentials(actor=world.bob, device=world.lamp,
                                                  now=cutoff.not_before - timedelta(milliseconds=400))
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["iat"] == claims["nbf"] == int(cutoff.not_before.timestamp())


def test_the_authorizer_refuses_a_token_from_before_the_cutoff_and_admits_one_after(
        world, keys, table, django_capture_on_commit_callbacks):
    old = credentials.issue_device_credentials(actor=world.owner, device=world.lamp,
                                               now=timezone.now() - timedelta(seconds=5))
    with django_capture_on_commit_callbacks(execute=True):
        services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.bob)
    new = credentials.issue_device_credentials(actor=world.bob, device=world.lamp)
    cutoff = TokenCutoff.objects.get(tenant=world.tenant, kind=DEVICE, principal=world.lamp.thing_name)
    # The pushed snapshot carries the cut-off (snapshot format 3).
    # (The table also holds the key item: read the device's item alone.)
    item = snapshot.from_item(table.items()[snapshot.item_key(DEVICE, world.tenant.pk, world.lamp.thing_name)])
    assert item.cutoff == int(cutoff.not_before.timestamp())

    refused, refusal, _ = authorize(old)
    assert refused["isAuthenticated"] is False and refusal["reason"] == "token_revoked"
    admitted, _, _ = authorize(new)
    assert admitted["isAuthenticated"] is True


def authorize(issued: credentials.Credentials):
    """The real authorizer's answer to a connection with this token (as
    manage.py authorize plays it, on the table the test pushed to): the
    response, its log line, what it logged at cold start."""
    from django.conf import settings

    env = simulator.lambda_environment(
        table=settings.DYNAMODB_TABLE, issuer=settings.IOT_TOKEN_ISSUER, audience=settings.IOT_TOKEN_AUDIENCE,
        token_key_name=settings.IOT_TOKEN_KEY_NAME, account=settings.AWS_ACCOUNT_ID, region=settings.AWS_REGION,
        iot_region=settings.IOT_REGION, endpoint_url=settings.DYNAMODB_ENDPOINT_URL,
        access_key_id=settings.AWS_ACCESS_KEY_ID, secret_access_key=settings.AWS_SECRET_ACCESS_KEY)
    event = simulator.connection_event(endpoint=issued.endpoint, via="mqtt", client_id=issued.client_id,
                                       token=issued.token, mqtt_username=issued.mqtt_username)
    return simulator.invoke(event, env)


def stubbed_gateway(*client_ids: str) -> tuple[iot.IotGateway, Stubber]:
    """A gateway of its own (one per thread: a Stubber answers in order)."""
    client = boto3.client("iot-data", region_name="us-east-1", endpoint_url=DATA_ENDPOINT,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    stub = Stubber(client)
    DataPlane(stub, None).closes(*client_ids)
    stub.activate()
    return iot.IotGateway(client=None, data_client=client), stub


@pytest.mark.django_db(transaction=True)
def test_two_cuts_settling_one_receipt_at_once_finish_it(world, keys):
    first, second = share(world, world.alice), share(world, world.bob)
    alices, bobs = app_token(world, world.alice), app_token(world, world.bob)
    with receipts.collecting() as found, transaction.atomic():
        services.revoke_share(actor=world.owner, share=first)
        services.revoke_share(actor=world.owner, share=second)
    push_lagging()
    together = threading.Barrier(2)
    errors = []

    def run(user, client_id):
        gateway, stub = stubbed_gateway(client_id)
        try:
            together.wait(10)
            cut.run([cut_of(world, user).pk], gateway=gateway)
            stub.assert_no_pending_responses()
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=a) for a in ((world.alice, alices.client_id),
                                                               (world.bob, bobs.client_id))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    receipt = AccessReceipt.objects.get(pk=found[0].pk)
    assert receipt.done and receipt.closed == 2
    assert AuditEvent.objects.filter(action=Action.SESSIONS_CLOSE).count() == 1


# --- what a review found (docs/live-access.md) ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_crash_between_marking_a_cut_done_and_settling_its_receipt_undoes_both(world, keys, data_plane,
                                                                                   monkeypatch):
    granted = share(world, world.alice)
    phone = app_token(world, world.alice)
    with receipts.collecting() as found:
        services.revoke_share(actor=world.owner, share=granted)
    push_lagging()
    row = cut_of(world, world.alice)
    data_plane.closes(phone.client_id)

    def crash(**kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(receipts, "settle", crash)
    with pytest.raises(RuntimeError):
        cut.run([row.pk], gateway=data_plane.gateway)
    row.refresh_from_db()
    # Still lagging, so the reconciler runs it again and the receipt can finish.
    assert not row.in_sync
    assert row.pk in set(SessionCut.objects.lagging().ready().values_list("pk", flat=True))
    monkeypatch.undo()
    data_plane.stub.activate()
    data_plane.not_connected(phone.client_id)
    cut.run([row.pk], gateway=data_plane.gateway)
    assert AccessReceipt.objects.get(pk=found[0].pk).done


def test_a_snapshot_the_writer_format_cannot_say_fails_alone_and_its_batch_is_written(world, table, settings):
    services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.alice)  # a device cut-off
    share(world, world.bob, device=world.lamp)
    settings.SNAPSHOT_WRITE_FORMAT = 2
    ids = list(PrincipalSync.objects.lagging().values_list("pk", flat=True))
    result = push(ids)
    device_row = PrincipalSync.objects.get(tenant=world.tenant, kind=DEVICE, principal=world.lock.thing_name)
    assert list(result.failed) == [device_row.pk] and "cut-off" in result.failed[device_row.pk]
    assert device_row.pk not in result.retryable
    assert set(result.written) == set(ids) - {device_row.pk}
    device_row.refresh_from_db()
    assert not device_row.in_sync and device_row.retry_after is not None  # backs off, tells the operator why
    assert "format 3" in device_row.last_error


def test_removing_an_admin_revokes_the_device_tokens_they_issued(world, keys):
    issued = credentials.issue_device_credentials(actor=world.admin, device=world.lock)
    credentials.issue_device_credentials(actor=world.owner, device=world.lamp)
    membership = Membership.objects.get(tenant=world.tenant, user=world.admin)
    root = UserFactory(is_superuser=True)
    bumped = cuts_bumped_by(lambda: services.remove_member(actor=root, membership=membership))
    assert bumped == person(world, world.admin) | thing(world, world.lock)
    lock_floor = cutoffs.issue_floor(tenant_id=world.tenant.pk, kind=DEVICE, principal=world.lock.thing_name)
    assert lock_floor > jwt.decode(issued.token, options={"verify_signature": False})["iat"]
    assert cutoffs.issue_floor(tenant_id=world.tenant.pk, kind=DEVICE, principal=world.lamp.thing_name) is None


def test_sign_out_leaves_the_device_tokens_a_person_issued_alone(world, keys):
    from authz.live import services as live_services

    credentials.issue_device_credentials(actor=world.owner, device=world.lock)
    bumped = cuts_bumped_by(lambda: live_services.sign_out_apps(actor=world.owner, tenant=world.tenant))
    assert bumped == person(world, world.owner)


@pytest.mark.django_db(transaction=True)
def test_the_cut_reconciler_leaves_fresh_cuts_to_the_push_and_leases_what_it_queues(world, table, settings,
                                                                                  monkeypatch):
    from authz import tasks

    settings.IOT_DATA_ENDPOINT_URL = DATA_ENDPOINT
    queued = []
    monkeypatch.setattr(cut_outbox, "enqueue", lambda ids: queued.append(list(ids)) or len(ids))
    granted = share(world, world.alice)
    services.revoke_share(actor=world.owner, share=granted)
    push_lagging()
    row = cut_of(world, world.alice)
    assert queued[-1] == [row.pk]  # the push task queued it after writing its snapshot
    queued.clear()
    assert tasks.reconcile_session_cuts() == 0 and queued == [[]]  # so the reconciler leaves it alone for now
    SessionCut.objects.filter(pk=row.pk).update(changed_at=timezone.now() - timedelta(minutes=1))
    assert tasks.reconcile_session_cuts() == 1 and queued[-1] == [row.pk]
    assert tasks.reconcile_session_cuts() == 0  # leased: not queued again at the next beat
    row.refresh_from_db()
    assert row.retry_after is not None and row.retry_after > timezone.now()


def test_a_cut_that_fails_part_way_still_counts_what_it_closed(world, keys, data_plane):
    granted = share(world, world.alice)
    first, second = sorted([app_token(world, world.alice).client_id, app_token(world, world.alice).client_id])
    with receipts.collecting() as found:
        services.revoke_share(actor=world.owner, share=granted)
    push_lagging()
    row = cut_of(world, world.alice)
    data_plane.closes(first)
    data_plane.throttles(second)
    assert list(cut.run([row.pk], gateway=data_plane.gateway).failed) == [row.pk]
    data_plane.not_connected(first)  # the retry finds the first one gone
    data_plane.closes(second)
    assert cut.run([row.pk], gateway=data_plane.gateway).done == [row.pk]
    receipt = AccessReceipt.objects.get(pk=found[0].pk)
    assert receipt.done and receipt.closed == 2 and receipt.client_ids == [first, second]
