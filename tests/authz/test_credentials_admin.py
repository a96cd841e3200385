"""The console's IoT credentials: the tenant-scoped list of issued client ids,
issuing a device's credentials (shown once), and the daily prune."""
import base64
import html
import logging
import re
import shlex
from datetime import timedelta
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from authz import tasks
from authz.models import IssuedCredential, SigningKey
from authz.tokens import credentials, rotation
from devices import services
from devices.models import AuditEvent
from lambda_bridge import compact, keys, snapshot
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

ISSUE = reverse("admin:authz_issuedcredential_issue_device")
LIST = reverse("admin:authz_issuedcredential_changelist")
SHOWN = {"credential", "clientId", "endpoint", "authorizerName", "tokenKeyName", "expiresAt", "token",
         "tokenSignature", "mqttUsername", "wssUrl"}
SHOWN_COMPACT = {"credential", "clientId", "endpoint", "authorizerName", "tokenKeyName", "expiresAt", "token",
                 "mqttUsername", "mqttPassword", "httpsPublish"}


@pytest.fixture
def key(table):
    rotation.rotate(actor=None)
    return SigningKey.objects.get(state=keys.ACTIVE)


def shown(response) -> dict[str, str]:
    """The credentials on the result page, as the textareas show them."""
    page = response.content.decode()
    return {name: html.unescape(value)
            for name, value in re.findall(r'<textarea id="cred-(\w+)"[^>]*>(.*?)</textarea>', page, re.S)}


def issues():
    return IssuedCredential.objects.count(), AuditEvent.objects.filter(action="iot_credentials.issue").count()


def device_choices(response) -> set[int]:
    return {device.pk for device in response.context["form"].fields["device"].queryset}


# --- issuing ----------------------------------------------------------------------


def test_tenant_admin_issues_a_devices_credentials_shown_once(client, world, key, settings):
    client.force_login(world.admin)
    response = client.post(ISSUE, {"device": world.lamp.pk, "lifetime": ""})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "not stored" in page and "cannot be shown again" in page
    creds = shown(response)
    assert set(creds) == SHOWN
    token, thing = creds["token"], world.lamp.thing_name

    claims = jwt.decode(token, key.public_pem, algorithms=["RS256"], audience=settings.IOT_TOKEN_AUDIENCE,
                        issuer=settings.IOT_TOKEN_ISSUER)
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    assert (claims["sub"], claims["cid"], claims["tid"]) == (f"device:{thing}", thing, world.tenant.pk)
    assert claims["exp"] - claims["iat"] == settings.DEVICE_TOKEN_LIFETIME_SECONDS
    public = serialization.load_pem_public_key(key.public_pem.encode())
    public.verify(base64.b64decode(creds["tokenSignature"]), token.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert (creds["clientId"], creds["endpoint"], creds["tokenKeyName"]) == (
        thing, settings.IOT_ENDPOINT, settings.IOT_TOKEN_KEY_NAME)
    assert creds["authorizerName"] == settings.IOT_CLIENT_AUTHORIZER_NAME
    assert quote(token, safe="") in creds["mqttUsername"]
    assert creds["wssUrl"].startswith(f"wss://{settings.IOT_ENDPOINT}/mqtt?")
    assert quote(token, safe="") in creds["wssUrl"]

    row = IssuedCredential.objects.get()
    assert (row.tenant, row.kind, row.principal, row.client_id, row.jti, row.kid, row.issued_by) == (
        world.tenant, snapshot.DEVICE, thing, thing, claims["jti"], key.kid, world.admin)
    assert creds["expiresAt"] == row.expires_at.isoformat().replace("+00:00", "Z")
    event = AuditEvent.objects.get(action="iot_credentials.issue")
    assert (event.device_id, event.actor, event.source, event.object_id) == (
        world.lamp.pk, world.admin, "admin", str(row.pk))
    assert token not in str(event.changes)


def test_a_compact_credential_shows_what_the_device_sends_over_mqtt_and_https(client, world, key, settings):
    settings.IOT_COMPACT_AUTHORIZER_NAME = "frugal-auth"
    client.force_login(world.admin)
    response = client.post(ISSUE, {"device": world.lamp.pk, "credential": "compact", "lifetime": "900"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    creds = shown(response)
    assert set(creds) == SHOWN_COMPACT
    token, thing = creds["token"], world.lamp.thing_name
    parsed = compact.parse(token)
    assert keys.b64(parsed.kid) == key.compact_kid
    assert (parsed.claims.thing, parsed.claims.tenant) == (thing, world.tenant.pk)
    assert parsed.claims.expires - parsed.claims.issued_at == 900
    assert (creds["credential"], creds["clientId"], creds["authorizerName"]) == ("compact", thing, "frugal-auth")
    assert creds["mqttUsername"] == "?x-amz-customauthorizer-name=frugal-auth"
    assert creds["mqttPassword"] == token
    curl = shlex.split(creds["httpsPublish"])
    assert curl[:4] == ["curl", "--fail", "-X", "POST"]
    assert curl[4] == f"https://{settings.IOT_ENDPOINT}/topics/dev/{thing}/out/telemetry?qos=1"
    headers = [curl[i + 1] for i, word in enumerate(curl) if word == "-H"]
    assert headers == ["x-amz-customauthorizer-name: frugal-auth", f"{settings.IOT_TOKEN_KEY_NAME}: {token}"]
    row = IssuedCredential.objects.get()
    assert (row.credential, row.kid, row.issued_by) == ("compact", key.compact_kid, world.admin)
    event = AuditEvent.objects.get(action="iot_credentials.issue")
    assert event.changes["credential"] == "compact" and token not in str(event.changes)


def test_a_compact_credential_from_a_key_without_its_half_is_an_error_and_issues_nothing(client, world, key):
    SigningKey.objects.update(compact_kid="", compact_public="", compact_private_encrypted="")
    client.force_login(world.admin)
    response = client.post(ISSUE, {"device": world.lamp.pk, "credential": "compact"}, follow=True)
    assert not shown(response)
    assert "has no compact half" in response.content.decode()
    assert issues() == (0, 0)


def test_a_chosen_lifetime_is_the_tokens(client, world, key):
    client.force_login(world.admin)
    creds = shown(client.post(ISSUE, {"device": world.lock.pk, "lifetime": "900"}))
    claims = jwt.decode(creds["token"], key.public_pem, algorithms=["RS256"], options={"verify_aud": False})
    assert claims["exp"] - claims["iat"] == 900


def test_get_preselects_the_device_and_issues_nothing(client, world, key):
    client.force_login(world.admin)
    response = client.get(ISSUE, {"device": world.lock.pk})

    assert response.status_code == 200
    assert device_choices(response) == {world.lamp.pk, world.lock.pk}
    assert re.search(rf'<option value="{world.lock.pk}" selected>', response.content.decode())
    assert shown(response) == {}
    assert issues() == (0, 0)
    assert client.get(ISSUE, {"device": "not-a-number"}).status_code == 200
    assert issues() == (0, 0)


def test_the_changelist_links_to_the_issue_page(client, world):
    client.force_login(world.admin)
    assert f'href="{ISSUE}"' in client.get(LIST).content.decode()


def test_another_tenants_device_is_neither_listed_nor_accepted(client, world, other, key):
    client.force_login(other.admin)
    form = client.get(ISSUE, {"device": world.lamp.pk})
    assert device_choices(form) == {other.lamp.pk, other.lock.pk}
    assert world.lamp.thing_name not in form.content.decode() and "Acme" not in form.content.decode()

    response = client.post(ISSUE, {"device": world.lamp.pk, "lifetime": ""})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert shown(response) == {}
    assert issues() == (0, 0)


def test_a_device_owned_where_one_is_only_a_member_is_not_offered(client, world, other, key, admin_user):
    # The console administers: like every console page, it shows nothing of a
    # tenant where the user is a plain member, not even a device they own there.
    services.add_member(actor=admin_user, tenant=other.tenant, user=world.admin)
    mine_there = DeviceFactory(tenant=other.tenant, owner=world.admin, device_type=other.type)
    client.force_login(world.admin)
    assert device_choices(client.get(ISSUE)) == {world.lamp.pk, world.lock.pk}
    assert "Select a valid choice" in client.post(ISSUE, {"device": mine_there.pk}).content.decode()
    assert issues() == (0, 0)


def test_staff_who_administer_no_tenant_are_kept_out(client, world, key):
    world.owner.is_staff = True  # owns the lamp, but is no tenant admin: owners use the API
    world.owner.save()
    client.force_login(world.owner)
    assert client.get(ISSUE).status_code == 403
    assert client.post(ISSUE, {"device": world.lamp.pk}).status_code == 403
    assert issues() == (0, 0)


def test_the_post_needs_its_csrf_token(world, key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.admin)
    assert browser.post(ISSUE, {"device": world.lamp.pk}).status_code == 403
    assert issues() == (0, 0)


@pytest.mark.parametrize("missing", ["signing key", "endpoint"])
def test_unavailable_credentials_show_an_error_and_change_nothing(client, world, table, settings, missing):
    if missing == "endpoint":
        rotation.rotate(actor=None)
        settings.IOT_ENDPOINT = ""
    client.force_login(world.admin)  # audited itself (auth.sign_in)
    before = AuditEvent.objects.count()
    response = client.post(ISSUE, {"device": world.lamp.pk})

    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="error"' in page and "Nothing issued: Credentials cannot be issued right now" in page
    assert ("no active signing key" if missing == "signing key" else "IOT_ENDPOINT is not set") in page
    assert shown(response) == {} and 'type="submit"' in page
    assert (IssuedCredential.objects.count(), AuditEvent.objects.count()) == (0, before)


def test_a_lifetime_out_of_range_is_a_form_error(client, world, key):
    client.force_login(world.admin)
    response = client.post(ISSUE, {"device": world.lamp.pk, "lifetime": "60"})
    assert response.status_code == 200
    assert response.context["form"].errors["lifetime"] == [
        f"Between {credentials.MIN_LIFETIME_SECONDS} and 86400 seconds."]
    assert shown(response) == {}
    assert issues() == (0, 0)


# --- the list ---------------------------------------------------------------------


@pytest.fixture
def issued(world, other, key):
    """A device's and a person's credentials in each tenant, and an expired row in `world`."""
    rows = {}
    for w in (world, other):
        credentials.issue_device_credentials(actor=w.admin, device=w.lamp)
        credentials.issue_user_credentials(actor=w.alice, tenant=w.tenant)
        rows[w.tenant.slug] = set(IssuedCredential.objects.filter(tenant=w.tenant).values_list("pk", flat=True))
    expired = IssuedCredential.objects.filter(tenant=world.tenant, kind=snapshot.DEVICE).get()
    expired.expires_at = timezone.now() - timedelta(minutes=1)
    expired.save()
    return rows, expired


def listed(client, **params) -> set[int]:
    response = client.get(LIST, params)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_the_list_shows_own_tenant_rows_only(client, world, other, issued):
    rows, _ = issued
    client.force_login(world.admin)
    page = client.get(LIST).content.decode()
    assert listed(client) == rows["acme"]
    assert "globex" not in page.lower()  # not its rows, emails or tenant filter
    assert world.alice.email in page and world.lamp.thing_name in page  # principals: email, thing name
    theirs, mine = next(iter(rows["globex"])), next(iter(rows["acme"]))
    assert client.get(reverse("admin:authz_issuedcredential_change", args=[theirs])).status_code == 404
    assert client.get(reverse("admin:authz_issuedcredential_change", args=[mine])).status_code == 200


def test_live_and_expired_filters_and_search(client, world, issued):
    rows, expired = issued
    client.force_login(world.admin)
    assert listed(client, status="expired") == {expired.pk}
    assert listed(client, status="live") == rows["acme"] - {expired.pk}
    assert listed(client, q=expired.jti) == {expired.pk}
    assert listed(client, q=world.lamp.thing_name) == {expired.pk}


def test_superusers_see_every_tenant(client, issued, admin_user):
    rows, _ = issued
    client.force_login(admin_user)
    assert listed(client) == rows["acme"] | rows["globex"]


def test_rows_cannot_be_added_changed_or_deleted(client, world, issued):
    _, expired = issued
    client.force_login(world.admin)
    assert client.get(reverse("admin:authz_issuedcredential_add")).status_code == 403
    assert client.post(reverse("admin:authz_issuedcredential_delete", args=[expired.pk]),
                       {"post": "yes"}).status_code == 403
    assert IssuedCredential.objects.filter(pk=expired.pk).exists()


# --- pruning ----------------------------------------------------------------------


def test_prune_deletes_only_rows_expired_before_the_retention(world, other, key, settings, caplog):
    settings.ISSUED_CREDENTIALS_RETENTION_DAYS = 30
    now = timezone.now()
    ages = {"long expired": now - timedelta(days=31), "recently expired": now - timedelta(days=29),
            "live": now + timedelta(hours=1), "other tenant, long expired": now - timedelta(days=40)}
    rows = {}
    for name, expires_at in ages.items():
        w = other if name.startswith("other") else world
        credentials.issue_device_credentials(actor=w.admin, device=w.lamp)
        row = IssuedCredential.objects.latest("id")
        IssuedCredential.objects.filter(pk=row.pk).update(expires_at=expires_at)
        rows[name] = row.pk

    with caplog.at_level(logging.INFO, logger="authz.tasks"):
        assert tasks.prune_issued_credentials() == 2
    assert set(IssuedCredential.objects.values_list("pk", flat=True)) == {rows["recently expired"], rows["live"]}
    assert "pruned 2" in caplog.text
    # The issuances stay in the audit log.
    assert AuditEvent.objects.filter(action="iot_credentials.issue").count() == 4

    settings.ISSUED_CREDENTIALS_RETENTION_DAYS = 7
    assert tasks.prune_issued_credentials() == 1
    assert set(IssuedCredential.objects.values_list("pk", flat=True)) == {rows["live"]}


def test_beat_prunes_daily(settings):
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values()
                 if e["task"] == "authz.tasks.prune_issued_credentials")
    assert entry["schedule"] == 86400
