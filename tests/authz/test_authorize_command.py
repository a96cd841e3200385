"""`manage.py authorize`: a real token from the active key, the event AWS IoT
would send, the real handler against the (moto) table the pipeline pushed
to, and the evaluator's verdict on one action."""
import base64
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.management import call_command
from django.core.management.base import CommandError

from authz.live import services as live_services
from authz.models import IssuedCredential, SigningKey
from authz.snapshots import outbox, store
from authz.tokens import credentials, rotation
from devices import services
from devices.models import AuditEvent, Level, Membership
from tests.factories import MembershipFactory, ShareFactory
from tests.support.schedules import weekly

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(monkeypatch):
    """Every Credentials the command got, to look for the token in its output."""
    seen = []
    for name in ("issue_user_credentials", "issue_device_credentials"):
        real = getattr(credentials, name)

        def spy(*args, _real=real, **kwargs):
            creds = _real(*args, **kwargs)
            seen.append(creds)
            return creds

        monkeypatch.setattr(credentials, name, spy)
    return seen


def authorize(*args):
    """(exit status, stdout, error message) of one run."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("authorize", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), ""


def as_json(*args):
    status, out, error = authorize(*args, "--json")
    return status, json.loads(out) if out else None, error


def shared(pushed, world, grantee, level, device):
    return pushed(lambda: services.create_share(actor=world.owner, grantee=grantee, level=level, device=device))


# --- who may do what ------------------------------------------------------------------


def test_the_owner_connects(pushed, world):
    status, out, error = authorize("--as", world.owner.email, "--action", "connect")
    assert (status, error) == (0, "")
    assert "isAuthenticated=true  reason=ok" in out
    assert f"principalId=u{world.tenant.pk}x{world.owner.pk}" in out
    assert "Verdict     ALLOW" in out
    assert '"Action": [\n        "iot:Connect"' in out  # the policies, pretty-printed


def test_the_owner_publishes_a_command_to_their_device(pushed, world):
    status, body, _ = as_json("--as", world.owner.email, "--action", "publish",
                              "--topic", f"dev/{world.lamp.thing_name}/in/power")
    assert status == 0
    assert body["action"]["verdict"] == "ALLOW"
    assert body["action"]["resource"].endswith(f":topic/dev/{world.lamp.thing_name}/in/power")
    assert body["authorizer"]["isAuthenticated"] is True
    assert body["authorizer"]["policyDocuments"] == len(body["policies"]) >= 1
    assert body["log"]["decision"] == "allow" and body["log"]["devices"] == 2
    assert body["principal"] == {"kind": "user", "email": world.owner.email, "user_id": world.owner.pk,
                                 "tenant": world.tenant.slug}


def test_a_device_someone_does_not_reach_is_denied(pushed, world):
    status, out, error = authorize("--as", world.alice.email, "--action", "subscribe",
                                   "--topic", f"dev/{world.lock.thing_name}/out/#")
    assert status == 1
    assert "isAuthenticated=true" in out  # she connects; the policies just do not reach the lock
    assert "Verdict     DENY: no policy statement allows it" in out
    assert error == f"subscribe dev/{world.lock.thing_name}/out/#: no policy statement allows it"


def test_another_tenants_device_is_denied(pushed, world, other):
    status, body, _ = as_json("--as", world.owner.email, "--action", "publish",
                              "--topic", f"dev/{other.lamp.thing_name}/in/power")
    assert status == 1
    assert body["authorizer"]["isAuthenticated"] is True
    assert body["action"]["verdict"] == "DENY"
    # ... while the same person reaches their own lamp with the same kind of token.
    assert as_json("--as", world.owner.email, "--action", "publish",
                   "--topic", f"dev/{world.lamp.thing_name}/in/power")[0] == 0


def test_a_view_sharee_reads_state_but_sends_no_commands(pushed, world):
    shared(pushed, world, world.bob, Level.VIEW, world.lamp)
    thing = world.lamp.thing_name
    verdicts = {(action, topic): authorize("--as", world.bob.email, "--action", action, "--topic", topic)[0]
                for action, topic in [
                    ("subscribe", f"dev/{thing}/out/#"),
                    ("receive", f"dev/{thing}/out/state"),
                    ("publish", f"$aws/things/{thing}/shadow/get"),
                    ("publish", f"dev/{thing}/in/power"),
                    ("publish", f"$aws/things/{thing}/shadow/update"),
                ]}
    assert verdicts == {
        ("subscribe", f"dev/{thing}/out/#"): 0,
        ("receive", f"dev/{thing}/out/state"): 0,
        ("publish", f"$aws/things/{thing}/shadow/get"): 0,
        ("publish", f"dev/{thing}/in/power"): 1,
        ("publish", f"$aws/things/{thing}/shadow/update"): 1,
    }


def test_a_control_sharee_sends_commands(pushed, world):
    shared(pushed, world, world.bob, Level.CONTROL, world.lamp)
    assert authorize("--as", world.bob.email, "--action", "publish",
                     "--topic", f"dev/{world.lamp.thing_name}/in/power")[0] == 0


def test_a_revoke_reaches_the_authorizer(pushed, world):
    share = shared(pushed, world, world.bob, Level.CONTROL, world.lamp)
    pushed(lambda: services.revoke_share(actor=world.owner, share=share))
    status, body, _ = as_json("--as", world.bob.email, "--action", "publish",
                              "--topic", f"dev/{world.lamp.thing_name}/in/power")
    assert status == 1 and body["log"]["devices"] == 0


@pytest.mark.parametrize("via", ["mqtt", "wss"])
def test_a_client_id_other_than_the_tokens_is_refused(pushed, world, via):
    someone_else = f"u{world.tenant.pk}.{world.alice.pk}.app"
    status, body, error = as_json("--as", world.owner.email, "--action", "connect", "--client-id", someone_else,
                                  "--via", via)
    assert status == 1
    assert body["authorizer"] == {
        "isAuthenticated": False, "reason": "client_id_mismatch", "detail": None, "principalId": "refused",
        "refreshAfterInSeconds": 300, "disconnectAfterInSeconds": 300, "policyDocuments": 0,
    }
    assert body["clientId"] == someone_else != body["tokenClientId"]
    assert body["policies"] == []
    assert "client_id_mismatch" in error


def test_a_device_thing_name_is_refused_as_a_persons_client_id(pushed, world):
    status, out, _ = authorize("--as", world.owner.email, "--action", "connect",
                               "--client-id", world.lamp.thing_name)
    assert status == 1 and "reason=client_id_mismatch" in out


def test_over_websocket_the_gateway_hands_over_the_token_it_found_in_the_query_string(pushed, world):
    # Issue 14, 7(d): a signed authorizer gets the token the gateway verified,
    # over a WebSocket as over MQTT, so the Lambda reads it from `token`.
    status, body, _ = as_json("--as", world.owner.email, "--via", "wss", "--action", "publish",
                              "--topic", f"dev/{world.lamp.thing_name}/in/power")
    assert status == 0
    assert body["log"]["source"] == "token"
    assert as_json("--as", world.owner.email, "--action", "connect")[1]["log"]["source"] == "token"
    status, body, _ = as_json("--as", world.alice.email, "--via", "wss", "--action", "publish",
                              "--topic", f"dev/{world.lamp.thing_name}/in/power")
    assert status == 1 and body["log"]["source"] == "token"


def test_a_device_connects_as_itself_and_owns_its_topics(pushed, world):
    thing = world.lamp.thing_name
    status, body, _ = as_json("--device", thing, "--action", "connect")
    assert status == 0
    assert body["principal"]["kind"] == "device"
    assert body["clientId"] == body["tokenClientId"] == thing
    assert body["authorizer"]["principalId"].startswith(f"d{world.tenant.pk}x")
    assert as_json("--device", thing, "--action", "publish", "--topic", f"dev/{thing}/out/state")[0] == 0
    assert as_json("--device", thing, "--action", "subscribe", "--topic", f"dev/{thing}/in/#")[0] == 0
    # Neither another device's topics nor the app's direction.
    assert as_json("--device", thing, "--action", "publish", "--topic", f"dev/{thing}/in/power")[0] == 1
    assert as_json("--device", thing, "--action", "receive",
                   "--topic", f"dev/{world.lock.thing_name}/in/power")[0] == 1


def test_device_credentials_need_an_actor_outside_the_command(pushed, world):
    """The operator path is the command's alone: a missing actor is refused."""
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        credentials.issue_device_credentials(actor=None, device=world.lamp)
    assert not IssuedCredential.objects.exists()


# --- what it records and what it never shows --------------------------------------------


def test_each_run_records_an_issued_credential_and_an_audit_event(pushed, world, issued):
    authorize("--as", world.owner.email, "--action", "connect")
    authorize("--device", world.lamp.thing_name, "--action", "connect")

    rows = list(IssuedCredential.objects.order_by("issued_at", "id"))
    assert [(r.kind, r.principal, r.client_id, r.issued_by_id) for r in rows] == [
        ("u", str(world.owner.pk), issued[0].client_id, world.owner.pk),
        ("d", world.lamp.thing_name, world.lamp.thing_name, None),
    ]
    events = list(AuditEvent.objects.filter(action="iot_credentials.issue").order_by("id"))
    assert [(e.actor_id, e.source, e.tenant_id, e.object_id) for e in events] == [
        (world.owner.pk, "command", world.tenant.pk, str(rows[0].pk)),
        (None, "command", world.tenant.pk, str(rows[1].pk)),
    ]
    assert events[1].device_id == world.lamp.pk


@pytest.mark.parametrize("via", ["mqtt", "wss"])
@pytest.mark.parametrize("output", [[], ["--json"]])
def test_neither_token_nor_signature_is_ever_printed(pushed, world, issued, via, output):
    status, out, error = authorize("--as", world.owner.email, "--action", "connect", "--via", via, *output)
    status2, out2, error2 = authorize("--as", world.owner.email, "--action", "connect", "--via", via,
                                      "--client-id", "someone", *output)
    assert (status, status2) == (0, 1)
    printed = out + error + out2 + error2
    for creds in issued:
        for secret in (creds.token, creds.token.rsplit(".", 1)[1], creds.token_signature,
                       quote(creds.token_signature, safe=""), creds.token_signature[:40]):
            assert secret not in printed
    assert issued and out.count("\n") > 5


def test_a_signature_the_gateway_would_reject_stops_before_the_authorizer(pushed, world, monkeypatch, capsys):
    """AWS IoT checks the signature before it invokes a signed authorizer; so does the command."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    real = credentials.issue_user_credentials

    def signed_by_a_stranger(**kwargs):
        creds = real(**kwargs)
        signature = stranger.sign(creds.token.encode(), padding.PKCS1v15(), hashes.SHA256())
        return dataclasses.replace(creds, token_signature=base64.b64encode(signature).decode())

    monkeypatch.setattr(credentials, "issue_user_credentials", signed_by_a_stranger)
    capsys.readouterr()
    status, out, error = authorize("--as", world.owner.email, "--action", "connect")
    assert (status, out) == (2, "")
    assert error.startswith("the token's signature does not verify with the authorizer's public keys")
    assert capsys.readouterr().out == ""  # the handler never ran, so it logged nothing


# --- when the question cannot be asked -------------------------------------------------


def test_no_active_key_is_a_one_line_error_and_issues_nothing(world, table):
    status, out, error = authorize("--as", world.owner.email, "--action", "connect")
    assert status == 2 and out == ""
    assert "run `manage.py signing_keys rotate`" in error and "\n" not in error
    assert not IssuedCredential.objects.exists()


def test_an_unpublished_key_set_is_a_one_line_error(world, table):
    rotation.rotate(actor=None)
    store.client().delete_item(TableName=table.name, Key={"pk": {"S": "keys#signing"}})
    status, _, error = authorize("--as", world.owner.email, "--action", "connect")
    assert status == 2 and "signing_keys rotate" in error and "\n" not in error
    assert not IssuedCredential.objects.exists()


def test_an_unreachable_table_is_a_one_line_error(pushed, world, settings):
    reachable = settings.DYNAMODB_ENDPOINT_URL
    settings.DYNAMODB_ENDPOINT_URL = "http://127.0.0.1:9"  # discard: nothing listens
    store.client.cache_clear()
    try:
        status, _, error = authorize("--as", world.owner.email, "--action", "connect")
    finally:  # the table fixture deletes its table through this client
        settings.DYNAMODB_ENDPOINT_URL = reachable
        store.client.cache_clear()
    assert status == 2
    assert error.startswith("DynamoDB is unreachable (table ") and "\n" not in error
    assert not IssuedCredential.objects.exists()


def test_a_missing_table_is_a_one_line_error(pushed, world, settings):
    settings.DYNAMODB_TABLE = "no-such-table"
    status, _, error = authorize("--as", world.owner.email, "--action", "connect")
    assert status == 2 and "ensure_dynamodb_table" in error


def test_an_authorizer_that_cannot_read_its_keys_is_a_setup_error_not_a_denial(pushed, world, table):
    item = table.items()["keys#signing"]
    store.client().put_item(TableName=table.name, Item={**item, "f": {"N": "99"}})
    status, out, error = authorize("--as", world.owner.email, "--action", "connect")
    assert status == 2
    assert error == ("the authorizer could not decide: keys_unavailable "
                     "(key item format 99 is not readable here (reads 1))")
    assert "isAuthenticated=false  reason=keys_unavailable" in out  # the answer is still shown


def test_bad_lambda_settings_are_a_one_line_error(pushed, world, settings):
    settings.AWS_ACCOUNT_ID = "not-an-account"
    status, _, error = authorize("--as", world.owner.email, "--action", "connect")
    assert status == 2
    assert error == ("the authorizer cannot start with these settings: "
                     "DEVSHARE_AWS_ACCOUNT_ID must be the 12-digit AWS account id")


@pytest.mark.parametrize("args, message", [
    (["--as", "nobody@acme.test", "--action", "connect"], "No user with email 'nobody@acme.test'."),
    (["--as", "owner@acme.test", "--tenant", "globex", "--action", "connect"],
     "owner@acme.test is not a member of tenant 'globex' (their tenants: acme)."),
    (["--as", "owner@acme.test", "--tenant", "initech", "--action", "connect"], "No tenant with slug 'initech'."),
    (["--device", "no-such-thing", "--action", "connect"], "No device with thing name 'no-such-thing'."),
    (["--as", "owner@acme.test", "--action", "publish"], "--topic is required for publish."),
    (["--as", "owner@acme.test", "--action", "connect", "--topic", "dev/x/out/a"],
     "--topic does not apply to connect."),
    (["--as", "owner@acme.test", "--action", "publish", "--topic", "dev/+/in/power"],
     "A topic to publish names one topic: '+' and '#' belong in a subscribe filter."),
])
def test_bad_input_is_a_one_line_error_and_issues_nothing(pushed, args, message):
    assert authorize(*args)[0::2] == (2, message)
    assert not IssuedCredential.objects.exists()


def test_a_device_named_with_the_wrong_tenant_is_refused(pushed, world):
    status, _, error = authorize("--device", world.lamp.thing_name, "--tenant", "globex", "--action", "connect")
    assert (status, error) == (2, f"Device {world.lamp.thing_name} belongs to tenant 'acme', not 'globex'.")


def test_a_person_in_two_tenants_names_one(pushed, world, other):
    MembershipFactory(tenant=other.tenant, user=world.owner, role=Membership.Role.MEMBER)
    status, _, error = authorize("--as", world.owner.email, "--action", "connect")
    assert (status, error) == (2, "owner@acme.test belongs to 2 tenants (acme, globex): pick one with --tenant.")
    pushed(lambda: outbox.record_everyone(tenants=[other.tenant]))
    status, body, _ = as_json("--as", world.owner.email, "--tenant", "globex", "--action", "subscribe",
                              "--topic", f"dev/{world.lamp.thing_name}/out/#")
    assert status == 1 and body["principal"]["tenant"] == "globex"
    assert body["authorizer"]["principalId"] == f"u{other.tenant.pk}x{world.owner.pk}"


def test_someone_who_left_gets_no_token(pushed, world):
    membership = Membership.objects.get(tenant=world.tenant, user=world.bob)
    pushed(lambda: services.remove_member(actor=world.admin, membership=membership))
    status, _, error = authorize("--as", world.bob.email, "--tenant", "acme", "--action", "connect")
    assert (status, error) == (2, "bob@acme.test is not a member of tenant 'acme' (their tenants: none).")


def test_a_deactivated_account_gets_no_token(pushed, world):
    world.admin.is_superuser = True
    world.admin.save(update_fields=["is_superuser"])
    pushed(lambda: services.set_user_active(actor=world.admin, user=world.bob, is_active=False))
    status, _, error = authorize("--as", world.bob.email, "--action", "connect")
    assert (status, error) == (2, "Only active members of the tenant get IoT credentials.")
    assert not IssuedCredential.objects.exists()


def test_quiet_leaves_out_the_policies(pushed, world):
    _, loud, _ = authorize("--as", world.owner.email, "--action", "connect")
    _, quiet, _ = authorize("--as", world.owner.email, "--action", "connect", "--quiet")
    assert "Policy document 1 of" in loud and "Policy document" not in quiet
    assert "Verdict     ALLOW" in quiet
    body = as_json("--as", world.owner.email, "--action", "connect", "--quiet")[1]
    assert "policies" not in body and body["authorizer"]["policyDocuments"] >= 1


def test_the_environment_is_left_as_it_was(pushed, world, monkeypatch):
    import os

    monkeypatch.setenv("DEVSHARE_TABLE", "somebody-elses")
    monkeypatch.delenv("DEVSHARE_TOKEN_ISSUER", raising=False)
    # Left in the shell, not one of the Django-made settings: the Lambda must not see it.
    # (Were it seen, the 600 s token's connection would end at 300 s.)
    monkeypatch.setenv("DEVSHARE_DISCONNECT_SECONDS", "300")
    # At a fixed moment, so that a second turning between the token's issue
    # and the handler's call cannot make it 599.
    status, body, _ = as_json("--as", world.owner.email, "--action", "connect", "--at", "2027-03-30T10:00Z")
    assert status == 0
    assert body["authorizer"]["disconnectAfterInSeconds"] == 600
    assert os.environ["DEVSHARE_TABLE"] == "somebody-elses"
    assert os.environ["DEVSHARE_DISCONNECT_SECONDS"] == "300"
    assert "DEVSHARE_TOKEN_ISSUER" not in os.environ


# --- at another moment (--at) ------------------------------------------------------------

# Tuesdays 09:00-12:00 in Brussels, which moves to summer time on Sunday 28 March 2027.
TUESDAY_MORNINGS = weekly("Europe/Brussels", ("tue", "09:00", "12:00"))


def scheduled(pushed, world, grantee, level, device, schedule):
    """A share with a weekly schedule, pushed (written directly: the
    command reads what the pipeline pushed, however the share was made)."""
    def make():
        ShareFactory(tenant=world.tenant, device=device, grantee=grantee, created_by=world.owner, level=level,
                     schedule=schedule)
        outbox.record_everyone(tenants=[world.tenant])

    pushed(make)


def publish_at(world, user, device, at):
    return as_json("--as", user.email, "--action", "publish", "--topic", f"dev/{device.thing_name}/in/power",
                   "--at", at)


def test_at_judges_a_weekly_schedule_inside_and_outside_its_window(pushed, world, issued):
    scheduled(pushed, world, world.bob, Level.CONTROL, world.lamp, TUESDAY_MORNINGS)

    status, body, _ = publish_at(world, world.bob, world.lamp, "2027-03-30T10:00+02:00")
    assert status == 0 and body["action"]["verdict"] == "ALLOW"
    assert body["at"] == "2027-03-30 08:00:00Z"
    assert body["log"]["devices"] == 1

    status, body, error = publish_at(world, world.bob, world.lamp, "2027-03-30T12:00+02:00")
    assert status == 1 and body["log"]["devices"] == 0
    assert body["authorizer"]["isAuthenticated"] is True  # he connects; the lamp is just not his at noon
    assert error.endswith("no policy statement allows it")

    # The token of each run was dated at its moment, and is recorded so.
    at = datetime(2027, 3, 30, 8, tzinfo=UTC)
    assert jwt.decode(issued[0].token, options={"verify_signature": False})["iat"] == int(at.timestamp())
    first = IssuedCredential.objects.order_by("id").first()
    assert (first.issued_at, first.expires_at) == (at, at + timedelta(seconds=credentials.MIN_LIFETIME_SECONDS))


@pytest.mark.parametrize("at, allowed", [
    ("2027-03-23T10:30Z", True),    # 11:30 in winter time
    ("2027-03-30T10:30Z", False),   # 12:30 in summer time: the same UTC hour is past the window
    ("2027-03-23T07:30Z", False),   # 08:30 in winter time
    ("2027-03-30T07:30Z", True),    # 09:30 in summer time
    ("2027-03-30T09:30+01:00", True),   # any offset names the moment: 10:30 in Brussels
    ("2027-03-30T11:59:50+02:00", True),
    ("2027-03-30T11:59:55+02:00", False),  # within the authorizer's 10 s margin before the window closes
])
def test_at_reads_the_window_on_the_zones_own_clock_across_a_dst_change(pushed, world, at, allowed):
    scheduled(pushed, world, world.bob, Level.CONTROL, world.lamp, TUESDAY_MORNINGS)
    assert publish_at(world, world.bob, world.lamp, at)[0] == (0 if allowed else 1)


def test_at_shows_the_moment_and_the_tokens_end_after_it(pushed, world):
    status, out, _ = authorize("--as", world.owner.email, "--action", "connect", "--at", "2027-03-30T10:00+02:00")
    assert status == 0
    assert "At          2027-03-30 08:00:00Z: the token is dated then and the authorizer's clock reads it" in out
    assert "expires 2027-03-30 08:10:00Z (10m 0s after --at)" in out


@pytest.mark.parametrize("at, message", [
    ("2027-03-30T10:00", "--at '2027-03-30T10:00' has no UTC offset: add one (+02:00, Z), since a wall time "
                         "alone is ambiguous."),
    ("tuesday", "--at 'tuesday' is not an ISO 8601 time, like 2027-03-30T10:00+02:00."),
    # A token dated there would overflow the calendar (year 10000) on its way.
    ("9999-12-31T23:50+00:00", "--at '9999-12-31T23:50+00:00' is more than ten years from now."),
    ("1990-01-01T00:00Z", "--at '1990-01-01T00:00Z' is more than ten years from now."),
])
def test_at_without_an_offset_a_time_or_within_reach_is_a_one_line_error_and_issues_nothing(pushed, world, at, message):
    assert authorize("--as", world.owner.email, "--action", "connect", "--at", at)[0::2] == (2, message)
    assert not IssuedCredential.objects.exists()


def test_at_before_the_principals_cut_off_is_a_one_line_error(pushed, world):
    pushed(lambda: live_services.sign_out_apps(actor=world.bob, tenant=world.tenant))
    status, _, error = authorize("--as", world.bob.email, "--action", "connect", "--at", "2026-01-01T00:00Z")
    assert status == 2 and "\n" not in error
    assert error.startswith("--at 2026-01-01 00:00:00Z is before this user's token cut-off (")
    assert not IssuedCredential.objects.exists()


# --- compact device tokens (docs/credentials.md#compact-device-tokens) -------------------


@pytest.mark.parametrize("via, source", [("mqtt", "mqtt_password"), ("https-header", "http_header"),
                                         ("https-query", "query_string")])
def test_a_compact_token_reaches_the_unsigned_authorizer_by_every_way_a_device_sends_it(pushed, world, issued,
                                                                                        via, source):
    thing = world.lamp.thing_name
    status, body, _ = as_json("--device", thing, "--compact", "--via", via, "--action", "publish",
                              "--topic", f"dev/{thing}/out/state")
    assert status == 0, body
    assert body["credential"] == "compact"
    assert (body["log"]["source"], body["log"]["credential"]) == (source, "compact")
    assert body["authorizer"]["principalId"].startswith(f"d{world.tenant.pk}x")
    # The device's own policies: not the app's direction.
    assert as_json("--device", thing, "--compact", "--via", via, "--action", "publish",
                   "--topic", f"dev/{thing}/in/power")[0] == 1
    assert [c.credential for c in issued] == ["compact", "compact"]
    assert set(IssuedCredential.objects.values_list("credential", flat=True)) == {"compact"}


def test_a_key_without_a_compact_half_is_a_one_line_error_and_issues_nothing(pushed, world):
    SigningKey.objects.update(compact_kid="", compact_public="", compact_private_encrypted="")
    status, _, error = authorize("--device", world.lamp.thing_name, "--compact", "--action", "connect")
    assert status == 2 and "has no compact half" in error and "signing_keys stage" in error
    assert not IssuedCredential.objects.exists()
    # The signed credential of the same key still works.
    assert authorize("--device", world.lamp.thing_name, "--action", "connect")[0] == 0


@pytest.mark.parametrize("output", [[], ["--json"]])
def test_a_compact_token_is_never_printed(pushed, world, issued, output):
    status, out, error = authorize("--device", world.lamp.thing_name, "--compact", "--action", "connect", *output)
    assert status == 0, error
    compact_token = issued[0].token
    assert compact_token not in out + error and compact_token[-40:] not in out + error


@pytest.mark.parametrize("args, message", [
    (["--as", "owner@acme.test", "--compact", "--action", "connect"],
     "--compact is for devices (--device THING): a person's app gets signed credentials."),
    (["--device", "acme-lamp", "--compact", "--via", "wss", "--action", "connect"],
     "--via wss does not carry a compact token; use one of mqtt, https-header, https-query."),
    (["--device", "acme-lamp", "--via", "https-header", "--action", "connect"],
     "--via https-header is for --compact tokens only."),
])
def test_compact_options_that_do_not_fit_are_a_one_line_error_and_issue_nothing(pushed, args, message):
    assert authorize(*args)[0::2] == (2, message)
    assert not IssuedCredential.objects.exists()
