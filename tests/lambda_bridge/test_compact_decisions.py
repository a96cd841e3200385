"""Compact device tokens at the unsigned authorizer, end to end: the real
handler, the key item and snapshots in moto's DynamoDB over HTTP, events as
AWS IoT sends them (docs/authorizer.md#two-authorizers,
docs/authorizer.md#compact-device-tokens)."""
import json
import time

import pytest

from lambda_bridge import keys, snapshot
from lambda_bridge.evaluator import Connection
from lambda_bridge.snapshot import Entry
from tests.lambda_bridge.compact_support import SOURCES, event, keyring_item, swap_claims
from tests.support.lambda_env import ACCOUNT, REGION

LAMP, LOCK = "d-lamp00000001", "d-lock00000001"


def client_id_for(where: str) -> str | None:
    # HTTPS publish has no client id; MQTT always sends one.
    return None if where in ("http_header", "query_string") else LAMP


@pytest.fixture
def home(lam, compact_keys):
    """The lamp is a device of tenant 1 with its own snapshot; user 7 controls
    it and views the lock; slot A (both halves) is active."""
    lam.put_item(keyring_item(lam, compact_keys))
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LOCK, entries=[Entry(LOCK, snapshot.OWNER)])
    lam.compact = compact_keys
    return lam


def decide(lam, token: str, where: str = "token", *, signed=False, client_id: str | None = None) -> dict:
    """The handler's answer; the log line never holds the compact token."""
    response = lam.invoke(event(where, token, client_id=client_id, signed=signed))
    assert token not in json.dumps(lam.last_log)
    return response


def reason(lam, token: str, where: str = "token", **kwargs) -> str:
    response = decide(lam, token, where, **kwargs)
    assert response["isAuthenticated"] is False
    return lam.last_log["reason"]


# --- allowed, exactly as the device's JWT is -------------------------------------------


@pytest.mark.parametrize("signed", [False, None], ids=["signatureVerified false", "signatureVerified absent"])
@pytest.mark.parametrize("where", SOURCES)
def test_a_compact_token_is_allowed_through_every_source(home, where, signed):
    token = home.compact["a"].token(LAMP)

    response = decide(home, token, where, signed=signed, client_id=client_id_for(where))

    assert response["isAuthenticated"] is True, home.last_log
    assert home.last_log | {"source": where, "credential": "compact", "principal": f"device:{LAMP}",
                            "tenant": 1} == home.last_log
    can = Connection(response["policyDocuments"], REGION, ACCOUNT, LAMP).can
    assert can("iot:Connect", LAMP) and not can("iot:Connect", LOCK)
    assert can("iot:Publish", f"dev/{LAMP}/out/telemetry")
    assert can("iot:Subscribe", f"dev/{LAMP}/in/#")
    assert not can("iot:Publish", f"dev/{LOCK}/out/telemetry")
    assert not can("iot:Subscribe", f"dev/{LOCK}/in/#")


def test_a_compact_token_gets_the_documents_and_principal_of_the_devices_jwt(home):
    jwt_answer = home.invoke(home.event("test_invoke", home.token(sub=f"device:{LAMP}")))
    compact_answer = decide(home, home.compact["a"].token(LAMP), "mqtt_password", client_id=LAMP)

    assert jwt_answer["isAuthenticated"] is compact_answer["isAuthenticated"] is True
    assert compact_answer["policyDocuments"] == jwt_answer["policyDocuments"]
    assert compact_answer["principalId"] == jwt_answer["principalId"]
    assert [log["credential"] for log in home.logs] == ["signed", "compact"]


# --- the wrong authorizer ----------------------------------------------------------------


@pytest.mark.parametrize("where", SOURCES)
def test_a_jwt_at_the_unsigned_authorizer_is_refused(home, where):
    token = home.token(sub=f"device:{LAMP}")

    assert reason(home, token, where, client_id=client_id_for(where)) == "wrong_authorizer"


def test_a_compact_token_at_the_signed_authorizer_is_refused(home):
    token = home.compact["a"].token(LAMP)

    assert reason(home, token, signed=True) == "wrong_authorizer"


# --- the snapshot decides, as for a JWT ---------------------------------------------------


@pytest.mark.parametrize("issued, allowed", [(-1, False), (0, True), (1, True)])
def test_the_cut_off_applies(home, issued, allowed):
    cutoff = int(time.time()) - 100
    home.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)], cutoff=cutoff)

    response = decide(home, home.compact["a"].token(LAMP, issued_at=cutoff + issued))

    assert response["isAuthenticated"] is allowed
    assert home.last_log["reason"] == ("ok" if allowed else "token_revoked")


def test_a_transferred_or_deleted_devices_token_is_refused(home):
    """Its snapshot is a tombstone, whatever cut-off it carries."""
    token = home.compact["a"].token(LAMP)
    home.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, gone=True, cutoff=int(time.time()) - 3600)

    assert reason(home, token) == "principal_gone"


def test_the_tokens_tenant_names_the_snapshot(home):
    """A device moved to tenant 2: its tenant-1 token finds a tombstone, a
    tenant-2 token finds its new snapshot, under another principal id."""
    old = home.compact["a"].token(LAMP, tenant=1)
    new = home.compact["a"].token(LAMP, tenant=2)
    home.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, gone=True)
    home.put_snapshot(kind=snapshot.DEVICE, tenant=2, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])

    assert reason(home, old) == "principal_gone"
    first = decide(home, new)
    assert first["isAuthenticated"] is True and home.last_log["tenant"] == 2
    assert reason(home, home.compact["a"].token(LOCK, tenant=2)) == "no_snapshot"


def test_a_device_missing_from_its_own_snapshot_is_refused(home):
    home.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LOCK, snapshot.OWNER)])

    assert reason(home, home.compact["a"].token(LAMP)) == "principal_gone"


# --- signatures and keys -------------------------------------------------------------------


def test_claims_changed_under_another_tokens_signature_are_refused(home):
    a = home.compact["a"]
    forged = swap_claims(a.token(LAMP), a.token(LOCK))

    assert reason(home, forged) == "bad_signature"


def test_a_token_re_signed_with_a_key_not_in_the_item_is_refused(home):
    assert reason(home, home.compact["stranger"].token(LAMP)) == "unknown_kid"


def test_a_known_kid_signed_with_another_private_key_is_refused(home):
    forged = home.compact["stranger"].token(LAMP, kid=home.compact["a"].kid)

    assert reason(home, forged) == "bad_signature"


@pytest.mark.parametrize("states, signer, allowed", [
    ((keys.ACTIVE, keys.STAGED), "b", True),
    ((keys.RETIRING, keys.ACTIVE), "a", True),
    ((keys.RETIRED, keys.ACTIVE), "a", False),
    ((keys.RETIRED, keys.ACTIVE), "b", True),
], ids=["staged", "retiring", "retired", "active after rotation"])
def test_key_states(lam, compact_keys, states, signer, allowed):
    lam.put_item(keyring_item(lam, compact_keys, a=states[0], b=states[1]))
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])

    response = decide(lam, compact_keys[signer].token(LAMP))

    assert response["isAuthenticated"] is allowed
    assert lam.last_log["reason"] == ("ok" if allowed else "unknown_kid")


def test_a_key_item_without_compact_halves_verifies_no_compact_token(lam, compact_keys):
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])

    assert reason(lam, compact_keys["a"].token(LAMP)) == "unknown_kid"


# --- the client and the clock ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["token", "mqtt_password", "mqtt_username"])
def test_another_client_id_is_refused(home, where):
    assert reason(home, home.compact["a"].token(LAMP), where, client_id=LOCK) == "client_id_mismatch"


@pytest.mark.parametrize("times, expected", [
    (dict(issued_at=-3600, expires=-120), "expired"),
    (dict(issued_at=-3600, expires=-2), "expired"),
    (dict(issued_at=0, expires=299), "expires_too_soon"),
    (dict(issued_at=600, expires=3600), "not_yet_valid"),
    (dict(issued_at=0, expires=31 * 86400 + 1), "invalid_claims"),
])
def test_times(home, times, expected):
    now = int(time.time())
    token = home.compact["a"].token(LAMP, issued_at=now + times["issued_at"], expires=now + times["expires"])

    assert reason(home, token) == expected


def test_the_time_refusals_pass_a_moment_away(home):
    """Guards the table above: the same shapes just inside the rules pass."""
    now = int(time.time())
    for issued_at, expires in ((-3600, 400), (0, 31 * 86400), (20, 3600)):
        token = home.compact["a"].token(LAMP, issued_at=now + issued_at, expires=now + expires)
        assert decide(home, token)["isAuthenticated"] is True, home.last_log
