"""The authorizer end to end: canned IoT events in, decisions out, with the
key item and snapshots in a moto DynamoDB table."""
import base64
import json
import time

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_bridge import keys, snapshot
from lambda_bridge.evaluator import Connection
from lambda_bridge.snapshot import Entry
from tests.support.lambda_env import ACCOUNT, REGION

LAMP, LOCK = "d-lamp00000001", "d-lock00000001"
# canned event → where the handler should find the token
CANNED = {"mqtt_password": "mqtt_password", "mqtt_username": "mqtt_username", "mqtt_signed": "token",
          "websocket_query": "query_string", "http_header": "http_header", "test_invoke": "token"}


def connection(response, client_id="u1.7.app") -> Connection:
    return Connection(response["policyDocuments"], REGION, ACCOUNT, client_id)


@pytest.fixture
def alice(lam):
    """User 7 of tenant 1: controls the lamp, views the lock."""
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL), Entry(LOCK, snapshot.VIEW)])
    return lam


@pytest.mark.parametrize("name", CANNED)
def test_every_way_a_token_arrives_authenticates_it(alice, name):
    response = alice.invoke(alice.event(name, alice.token()))

    assert response["isAuthenticated"] is True, (alice.last_log["reason"], alice.last_log["detail"])
    can = connection(response).can
    assert can("iot:Publish", f"dev/{LAMP}/in/power")
    assert can("iot:Subscribe", f"dev/{LOCK}/out/#")
    assert not can("iot:Publish", f"dev/{LOCK}/in/open")
    assert alice.last_log["source"] == CANNED[name]
    assert alice.last_log["principal"] == "user:7" and alice.last_log["decision"] == "allow"


def test_header_name_matches_in_any_case(alice):
    event = alice.event("http_header", alice.token())
    headers = event["protocolData"]["http"]["headers"]
    headers["DEVSHARE-TOKEN"] = headers.pop("Devshare-Token")

    assert alice.invoke(event)["isAuthenticated"] is True


def test_query_string_token_is_url_decoded(alice):
    token = alice.token()
    event = alice.event("websocket_query", token)
    # A JWT needs no escaping, so escape every byte: only a decoding reader finds it.
    escaped = "".join(f"%{byte:02X}" for byte in token.encode())
    event["protocolData"]["http"]["queryString"] = f"?x-amz-customauthorizer-name=devshare&devshare-token={escaped}"

    assert alice.invoke(event)["isAuthenticated"] is True


def test_the_principal_id_is_stable_and_differs_between_principals(alice):
    first = alice.invoke(alice.event("test_invoke", alice.token(cid="u1.7.phone")))
    second = alice.invoke(alice.event("test_invoke", alice.token(cid="u1.7.tablet")))
    alice.put_snapshot(principal="8", entries=[Entry(LAMP, snapshot.VIEW)])
    other = alice.invoke(alice.event("test_invoke", alice.token(sub="user:8")))

    assert first["principalId"] == second["principalId"] != other["principalId"]


def test_principal_ids_of_different_principals_never_collide():
    from lambda_bridge.authorizer import principal_id
    from lambda_bridge.tokens import Claims

    def pid(kind, tenant, principal):
        return principal_id(Claims(kind=kind, principal=principal, tenant=tenant, client_id="c", expires=0))

    assert pid("u", 1, "17") != pid("u", 11, "7")
    assert pid("d", 1, "d-a") != pid("d", 1, "d-b") != pid("d", 2, "d-a")


# --- refusals -----------------------------------------------------------------


REFUSALS = {
    "alg none": (lambda lam: jwt.encode(_payload(lam), None, algorithm="none", headers={"kid": lam.keys["a"].kid}),
                 "unsupported_alg"),
    "HS256 with a secret": (lambda lam: jwt.encode(_payload(lam), "s" * 64, algorithm="HS256",
                                                   headers={"kid": lam.keys["a"].kid}), "unsupported_alg"),
    "HS256 keyed with the RSA public key": (lambda lam: _hmac_with_public_key(lam), "unsupported_alg"),
    "RS512": (lambda lam: lam.token(algorithm="RS512"), "unsupported_alg"),
    "unknown kid": (lambda lam: lam.token(key="stranger"), "unknown_kid"),
    "right kid, another key's signature": (
        lambda lam: lam.token(signing_key=lam.keys["stranger"].private), "bad_signature"),
    "wrong audience": (lambda lam: lam.token(aud="someone-else"), "wrong_audience"),
    "wrong issuer": (lambda lam: lam.token(iss="https://evil.test"), "wrong_issuer"),
    "expired": (lambda lam: lam.token(exp=int(time.time()) - 120), "expired"),
    "expired a moment ago (no leeway on expiry)": (lambda lam: lam.token(exp=int(time.time()) - 2), "expired"),
    "expiring before AWS's shortest answer": (lambda lam: lam.token(lifetime=200), "expires_too_soon"),
    "a second short of AWS's shortest answer": (lambda lam: lam.token(exp=int(time.time()) + 299),
                                                "expires_too_soon"),
    "lifetime over 31 days": (lambda lam: lam.token(lifetime=40 * 86400), "invalid_claims"),
    "audience list naming us among others": (lambda lam: lam.token(aud=["other", "devshare-iot"]), "wrong_audience"),
    "tenant given as true": (lambda lam: lam.token(tid=True, cid="u1.7.app"), "invalid_claims"),
    "not ASCII": (lambda lam: lam.token() + "\u00e9", "malformed_token"),
    "not yet valid": (lambda lam: lam.token(nbf=int(time.time()) + 600), "not_yet_valid"),
    "issued in the future": (lambda lam: lam.token(iat=int(time.time()) + 600), "not_yet_valid"),
    # 342 - 21 signature characters: a length no base64 can have. (Cutting 20
    # left valid base64 about once in 30 tokens, which then failed as bad_signature.)
    "truncated": (lambda lam: lam.token()[:-21], "malformed_token"),
    # One token, one spelling: base64url without padding and without stray
    # bits, or a re-spelled token would pass as the same one (issue 12, item 8).
    "signature padded with ==": (lambda lam: lam.token() + "==", "malformed_token"),
    "signature's last character re-spelled": (lambda lam: _respelled(lam.token()), "malformed_token"),
    "signature in the standard alphabet": (lambda lam: _standard_alphabet(lam), "malformed_token"),
    "cut in half": (lambda lam: lam.token()[:200], "malformed_token"),
    "payload swapped under a valid signature": (lambda lam: _swap_payload(lam), "bad_signature"),
    # No dot left: spelled like a compact token, which the signed authorizer
    # never takes (docs/authorizer.md#two-authorizers).
    "cut in the header": (lambda lam: lam.token()[:15], "malformed_token"),
    "cut just after the header": (lambda lam: lam.token().split(".")[0] + ".", "malformed_token"),
    "oversized": (lambda lam: lam.token(pad="x" * 5000), "token_too_large"),
    "no expiry": (lambda lam: lam.token(exp=None), "invalid_claims"),
    "expiry that is not a number": (lambda lam: lam.token(exp=str(int(time.time()) + 600)), "invalid_claims"),
    "sub of another kind": (lambda lam: lam.token(sub="admin:7"), "invalid_claims"),
    "client id with a wildcard": (lambda lam: lam.token(cid="u1.7.app*"), "invalid_claims"),
    "client id starting with $": (lambda lam: lam.token(cid="$aws"), "invalid_claims"),
    "another person's client id": (lambda lam: lam.token(cid="u1.8.app"), "invalid_claims"),
    "the same person's id in another tenant": (lambda lam: lam.token(cid="u2.7.app"), "invalid_claims"),
    "a device's client id on a person's token": (lambda lam: lam.token(cid=LAMP), "invalid_claims"),
    "scope on a device token": (lambda lam: lam.token(sub=f"device:{LAMP}", scope={"things": [LAMP]}),
                               "invalid_claims"),
    "device connecting as another client": (lambda lam: lam.token(sub=f"device:{LAMP}", cid="other"),
                                            "invalid_claims"),
    "scope of an unknown shape": (lambda lam: lam.token(scope={"everything": True}), "invalid_claims"),
    "scope with a wildcard thing": (lambda lam: lam.token(scope={"things": ["d-*"]}), "invalid_claims"),
}


def _payload(lam) -> dict:
    return jwt.decode(lam.token(), options={"verify_signature": False})


def _respelled(token: str) -> str:
    """The same signature bytes with other unused bits in the last character
    (342 characters carry 2,052 bits for 2,048)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(token.rsplit(".", 1)[1]) % 4 == 2
    return token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]


def _standard_alphabet(lam) -> str:
    # A signature holding at least one `-` or `_`, which `+` and `/` replace.
    token = next(t for t in iter(lam.token, None) if set(t.rsplit(".", 1)[1]) & set("-_"))
    head, signature = token.rsplit(".", 1)
    return f"{head}.{signature.replace('-', '+').replace('_', '/')}"


def _swap_payload(lam) -> str:
    header, _, signature = lam.token(sub="user:7").split(".")
    _, payload, _ = lam.token(sub="user:8").split(".")
    return f"{header}.{payload}.{signature}"


def _hmac_with_public_key(lam) -> str:
    # The classic confusion attack: a verifier that lets the token pick the
    # algorithm would check this HMAC with the public key as the secret.
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", "kid": lam.keys["a"].kid}
    encode = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    signing_input = f"{encode(header)}.{encode(_payload(lam))}"
    mac = hmac.new(lam.keys["a"].public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_tokens_are_refused_with_their_reason(alice, case):
    make, reason = REFUSALS[case]

    response = alice.invoke(alice.event("test_invoke", make(alice)))

    assert response["isAuthenticated"] is False
    assert alice.last_log["reason"] == reason, alice.last_log["detail"]


def test_the_same_good_token_passes_where_the_refusals_fail(alice):
    """Guards the table above: each case differs from a good token only in
    what it names."""
    assert alice.invoke(alice.event("test_invoke", alice.token()))["isAuthenticated"] is True


@pytest.mark.parametrize("event, reason", [
    ({}, "no_token"),
    ({"protocolData": {"mqtt": {"username": "phone", "clientId": "u1.7.app"}}}, "no_token"),
    ({"protocolData": {"mqtt": {"password": "not base64!", "clientId": "u1.7.app"}}}, "bad_password"),
    ({"protocolData": {"http": {"headers": {"devshare-token": "a", "Devshare-Token": "b"}}}}, "bad_event"),
    ({"protocolData": {"http": {"headers": {f"h{i}": "x" for i in range(201)}}}}, "bad_event"),
    ({"protocolData": {"mqtt": {"password": base64.b64encode("é".encode()).decode()}}}, "bad_password"),
    ({"protocolData": {"http": {"queryString": "?devshare-token=a&devshare-token=b"}}}, "bad_event"),
    ({"token": 42}, "malformed_token"),
    ("not an event", "bad_event"),
    (None, "bad_event"),
])
def test_events_without_a_usable_token_are_refused(alice, event, reason):
    response = alice.invoke(event)

    assert response["isAuthenticated"] is False
    assert alice.last_log["reason"] == reason


def test_a_client_asking_for_another_client_id_is_refused(alice):
    event = alice.event("mqtt_password", alice.token(), client_id="u1.7.other")

    assert alice.invoke(event)["isAuthenticated"] is False
    assert alice.last_log["reason"] == "client_id_mismatch"


def test_connect_names_exactly_the_tokens_client_id(alice):
    response = alice.invoke(alice.event("test_invoke", alice.token(cid="u1.7.phone-1")))
    conn = connection(response, "u1.7.phone-1")

    assert conn.can("iot:Connect", "u1.7.phone-1")
    for other in ("u1.7.phone-2", "u1.7.phone-1x", "+", "#", "*", "u1.7.phone-?", "$u1.7.phone-1", "U1.7.phone-1"):
        assert not conn.can("iot:Connect", other)


def test_an_empty_password_does_not_hide_the_token_in_the_username(alice):
    event = alice.event("mqtt_username", alice.token())
    event["protocolData"]["mqtt"]["password"] = ""

    assert alice.invoke(event)["isAuthenticated"] is True
    assert alice.last_log["source"] == "mqtt_username"


# --- the snapshot decides -------------------------------------------------------


@pytest.mark.parametrize("setup, reason", [
    (lambda lam: None, "no_snapshot"),
    (lambda lam: lam.put_snapshot(principal="7", gone=True), "principal_gone"),
    (lambda lam: lam.put_item({**snapshot.to_item(snapshot.Snapshot("u", 1, "7", 1, 0)), "f": {"N": "9"}}),
     "bad_snapshot"),
])
def test_a_principal_without_a_usable_snapshot_is_refused(lam, setup, reason):
    setup(lam)

    assert lam.invoke(lam.event("test_invoke", lam.token()))["isAuthenticated"] is False
    assert lam.last_log["reason"] == reason


def test_the_snapshot_of_another_tenant_is_never_read(lam):
    lam.put_snapshot(tenant=2, principal="7", entries=[Entry(LAMP, snapshot.OWNER)])

    assert lam.invoke(lam.event("test_invoke", lam.token(tid=1)))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "no_snapshot"


def test_entries_outside_their_window_grant_nothing(lam):
    now = int(time.time())
    lam.put_snapshot(principal="7", entries=[
        Entry(LAMP, snapshot.CONTROL, expires=now - 1),
        Entry(LOCK, snapshot.CONTROL, not_before=now + 3600),
        Entry("d-oven00000001", snapshot.VIEW, expires=now + 7200),
    ])

    response = lam.invoke(lam.event("test_invoke", lam.token()))
    can = connection(response).can

    assert not can("iot:Subscribe", f"dev/{LAMP}/out/#")
    assert not can("iot:Subscribe", f"dev/{LOCK}/out/#")
    assert can("iot:Subscribe", "dev/d-oven00000001/out/#")


def test_refresh_comes_when_the_next_grant_starts_or_ends(cold_start):
    lam = cold_start(DEVSHARE_REFRESH_SECONDS="86400")
    lam.put_keyring()
    now = int(time.time())
    lam.put_snapshot(principal="7", entries=[
        Entry(LAMP, snapshot.CONTROL, expires=now + 5000),
        Entry(LOCK, snapshot.VIEW, not_before=now + 2000),
    ])

    response = lam.invoke(lam.event("test_invoke", lam.token(lifetime=7200)))

    assert response["refreshAfterInSeconds"] == pytest.approx(2000, abs=2)
    assert response["disconnectAfterInSeconds"] == pytest.approx(7200, abs=2)


def test_a_grant_is_in_until_ten_seconds_before_its_end(lam):
    """The platform disconnects at a grant's end (docs/decisions/0007-exact-ends.md):
    a grant ending in a minute is in, one ending within the 10 s edge is not,
    and the refresh still comes at the next change, no sooner than AWS allows."""
    now = int(time.time())
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL, expires=now + 5),
                                             Entry(LOCK, snapshot.VIEW, expires=now + 60)])

    response = lam.invoke(lam.event("test_invoke", lam.token()))
    can = connection(response).can

    assert not can("iot:Publish", f"dev/{LAMP}/in/power")
    assert can("iot:Subscribe", f"dev/{LOCK}/out/#")
    assert response["refreshAfterInSeconds"] == 300


def test_a_600_second_token_is_never_refreshed_and_ends_at_expiry(alice):
    """A refresh at 300 s would find 300 s left, under 300 + 30: the answer
    carries the connection to its expiry instead."""
    response = alice.invoke(alice.event("test_invoke", alice.token(exp=int(time.time()) + 600)))

    assert response["isAuthenticated"] is True
    assert response["refreshAfterInSeconds"] == pytest.approx(600, abs=2)
    assert response["disconnectAfterInSeconds"] == response["refreshAfterInSeconds"]


# --- the token cut-off (docs/snapshots.md#the-token-cut-off) ----------------------------


@pytest.mark.parametrize("issued, allowed", [(-1, False), (0, True), (1, True)], ids=["before", "at", "after"])
def test_a_token_issued_before_the_cut_off_is_revoked(lam, issued, allowed):
    cutoff = int(time.time()) - 100
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL)], cutoff=cutoff, fmt=3)

    response = lam.invoke(lam.event("test_invoke", lam.token(iat=cutoff + issued)))

    assert response["isAuthenticated"] is allowed
    assert lam.last_log["reason"] == ("ok" if allowed else "token_revoked")


def test_a_device_token_from_before_a_transfer_is_revoked(lam):
    now = int(time.time())
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)], cutoff=now - 10)

    old = lam.invoke(lam.event("test_invoke", lam.token(sub=f"device:{LAMP}", iat=now - 3600)))
    assert (old["isAuthenticated"], lam.last_log["reason"]) == (False, "token_revoked")
    fresh = lam.invoke(lam.event("test_invoke", lam.token(sub=f"device:{LAMP}", iat=now - 10)))
    assert fresh["isAuthenticated"] is True


def test_a_tombstone_refuses_as_principal_gone_whatever_its_cut_off(lam):
    now = int(time.time())
    lam.put_snapshot(principal="7", gone=True, cutoff=now)

    response = lam.invoke(lam.event("test_invoke", lam.token(iat=now - 60)))

    assert response["isAuthenticated"] is False
    assert lam.last_log["reason"] == "principal_gone"


def test_a_cut_off_in_a_format_2_item_still_revokes(lam):
    now = int(time.time())
    item = snapshot.to_item(snapshot.Snapshot("u", 1, "7", 1, now, entries=(Entry(LAMP, snapshot.VIEW),)), fmt=2)
    lam.put_item({**item, "c": {"N": str(now)}})

    assert lam.invoke(lam.event("test_invoke", lam.token(iat=now - 60)))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "token_revoked"


@pytest.mark.parametrize("lifetime, expected", [(400, 400), (100_000, 86_400)])
def test_connection_lifetime_follows_the_token_within_aws_bounds(alice, lifetime, expected):
    response = alice.invoke(alice.event("test_invoke", alice.token(lifetime=lifetime)))

    assert response["isAuthenticated"] is True
    assert response["disconnectAfterInSeconds"] == pytest.approx(expected, abs=2)


def test_a_device_acts_only_as_itself(lam):
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])

    response = lam.invoke(lam.event("mqtt_password", lam.token(sub=f"device:{LAMP}", cid=LAMP), client_id=LAMP))
    can = connection(response, LAMP).can

    assert response["isAuthenticated"] is True
    assert can("iot:Publish", f"dev/{LAMP}/out/telemetry")
    assert can("iot:RetainPublish", f"dev/{LAMP}/out/state")
    assert can("iot:Subscribe", f"dev/{LAMP}/in/#") and can("iot:Receive", f"dev/{LAMP}/in/power")
    assert can("iot:Publish", f"$aws/things/{LAMP}/shadow/update")
    assert can("iot:Subscribe", f"$aws/things/{LAMP}/shadow/update/delta")
    assert not can("iot:Publish", f"dev/{LAMP}/in/power")  # commands come from apps
    assert not can("iot:Publish", f"dev/{LOCK}/out/telemetry")
    assert not can("iot:Subscribe", "dev/+/in/#")
    assert not connection(response, LOCK).can("iot:Connect", LOCK)


def test_a_deleted_device_cannot_connect(lam):
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, gone=True)

    response = lam.invoke(lam.event("test_invoke", lam.token(sub=f"device:{LAMP}", cid=LAMP)))

    assert response["isAuthenticated"] is False
    assert lam.last_log["reason"] == "principal_gone"


# --- scope and the policy budget ---------------------------------------------------


def _many(count: int, level=snapshot.VIEW, group=None) -> list[Entry]:
    return [Entry(f"d-many{i:08d}", level, group=group) for i in range(count)]


def test_too_many_devices_for_one_connection_is_scope_required_never_a_truncation(lam):
    lam.put_snapshot(principal="7", entries=_many(300))

    response = lam.invoke(lam.event("test_invoke", lam.token()))

    assert response["isAuthenticated"] is False
    assert lam.last_log["reason"] == "scope_required"
    assert lam.last_log["devices"] == 300


def test_a_scoped_token_narrows_to_its_things(lam):
    lam.put_snapshot(principal="7", entries=_many(300))
    scope = [f"d-many{i:08d}" for i in (3, 150)] + ["d-notmine0001"]

    response = lam.invoke(lam.event("test_invoke", lam.token(scope={"things": scope})))
    can = connection(response).can

    assert response["isAuthenticated"] is True
    assert can("iot:Subscribe", "dev/d-many00000003/out/#") and can("iot:Subscribe", "dev/d-many00000150/out/#")
    assert not can("iot:Subscribe", "dev/d-many00000004/out/#")
    assert not can("iot:Subscribe", "dev/d-notmine0001/out/#")  # a scope never adds anything
    assert lam.last_log["devices"] == 2


def test_a_group_scope_narrows_to_the_group(lam):
    lam.put_snapshot(principal="7",
                     entries=[Entry(LAMP, snapshot.CONTROL, group=5), Entry(LOCK, snapshot.VIEW, group=6)])

    response = lam.invoke(lam.event("test_invoke", lam.token(scope={"group": 5})))
    can = connection(response).can

    assert can("iot:Publish", f"dev/{LAMP}/in/power")
    assert not can("iot:Subscribe", f"dev/{LOCK}/out/#")


# --- keys -------------------------------------------------------------------------


def test_a_key_staged_after_the_cache_was_filled_is_found_by_one_early_reread(alice):
    assert alice.invoke(alice.event("test_invoke", alice.token(key="a")))["isAuthenticated"]
    reads = alice.handler.authorizer.keys.reads
    alice.put_keyring(a=keys.ACTIVE, b=keys.STAGED, version=2)
    alice.handler.authorizer.keys._loaded_at -= 11  # the cache is 11 s old: past the re-check interval

    response = alice.invoke(alice.event("test_invoke", alice.token(key="b")))

    assert response["isAuthenticated"] is True
    assert alice.handler.authorizer.keys.reads == reads + 1


def test_unknown_kids_do_not_turn_into_a_read_each(alice):
    assert alice.invoke(alice.event("test_invoke", alice.token(key="a")))["isAuthenticated"]
    reads = alice.handler.authorizer.keys.reads

    for _ in range(5):
        alice.invoke(alice.event("test_invoke", alice.token(key="stranger")))

    assert alice.last_log["reason"] == "unknown_kid"
    assert alice.handler.authorizer.keys.reads == reads


def test_both_slots_verify_and_a_retired_key_never_does(alice):
    alice.put_keyring(a=keys.RETIRING, b=keys.ACTIVE, version=2)
    alice.handler.authorizer.keys._loaded_at -= 61

    assert alice.invoke(alice.event("test_invoke", alice.token(key="a")))["isAuthenticated"]
    assert alice.invoke(alice.event("test_invoke", alice.token(key="b")))["isAuthenticated"]

    alice.put_keyring(a=keys.RETIRED, b=keys.ACTIVE, version=3)
    alice.handler.authorizer.keys._loaded_at -= 61

    assert not alice.invoke(alice.event("test_invoke", alice.token(key="a")))["isAuthenticated"]
    assert alice.last_log["reason"] == "unknown_kid"
    assert alice.invoke(alice.event("test_invoke", alice.token(key="b")))["isAuthenticated"]


def test_without_a_key_item_nothing_verifies(cold_start):
    lam = cold_start()
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.VIEW)])

    assert lam.invoke(lam.event("test_invoke", lam.token()))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "unknown_kid"


# --- operations -----------------------------------------------------------------


def test_one_log_line_per_decision_with_what_operators_need(alice):
    alice.invoke(alice.event("websocket_query", alice.token()))

    record = alice.last_log
    assert record["connection"] == "9b2d6b1e-8f0e-4c43-9a57-3f3f0cf6a003"
    assert record["decision"] == "allow" and record["reason"] == "ok"
    assert record["devices"] == 2 and record["documents"] >= 1 and record["policy_chars"] > 0
    assert record["tenant"] == 1 and isinstance(record["elapsed_ms"], float)


def test_a_missing_setting_refuses_every_connection_and_says_which(cold_start, capsys):
    lam = cold_start(DEVSHARE_TOKEN_AUDIENCE=None)
    startup = capsys.readouterr().out
    lam.put_keyring()

    response = lam.invoke(lam.event("test_invoke", lam.token()))

    assert json.loads(startup.strip().splitlines()[-1])["detail"] == "DEVSHARE_TOKEN_AUDIENCE is not set"
    assert response["isAuthenticated"] is False
    assert lam.last_log["reason"] == "misconfigured"


def test_an_unreachable_table_is_a_refusal_not_a_crash(cold_start):
    lam = cold_start(DEVSHARE_DYNAMODB_ENDPOINT_URL="http://127.0.0.1:9")  # nothing listens on discard

    response = lam.invoke(lam.event("test_invoke", lam.token()))

    assert response["isAuthenticated"] is False
    assert lam.last_log["reason"] == "keys_unavailable"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=20,
)
event_shapes = st.fixed_dictionaries({}, optional={
    "token": json_values | st.text(max_size=5000),
    "signatureVerified": json_values,
    "protocols": json_values,
    "protocolData": json_values | st.fixed_dictionaries({}, optional={
        "mqtt": json_values | st.fixed_dictionaries({}, optional={
            "username": json_values | st.text(max_size=300).map(lambda t: "u?devshare-token=" + t),
            "password": json_values | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
            "clientId": json_values}),
        "http": json_values | st.fixed_dictionaries({}, optional={
            "headers": json_values | st.dictionaries(st.sampled_from(["devshare-token", "DEVSHARE-TOKEN", "x"]),
                                                     json_values),
            "queryString": json_values | st.text(max_size=300)}),
    }),
    "connectionMetadata": json_values,
}) | json_values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=event_shapes)
def test_no_event_shape_makes_the_handler_raise(alice, event):
    response = alice.invoke(event)

    assert response["isAuthenticated"] is False
    assert alice.last_log["reason"] not in ("internal_error", "ok")


# --- what the review asked to pin down ---------------------------------------------


def test_an_item_under_the_right_key_naming_someone_else_is_refused(lam):
    stranger = snapshot.Snapshot("u", 1, "8", 1, int(time.time()), entries=(Entry(LAMP, snapshot.OWNER),))
    lam.put_item({**snapshot.to_item(stranger), "pk": {"S": "u#1#7"}})

    assert lam.invoke(lam.event("test_invoke", lam.token()))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "bad_snapshot"


def test_a_device_missing_from_its_own_snapshot_cannot_connect(lam):
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LOCK, snapshot.OWNER)])

    assert lam.invoke(lam.event("test_invoke", lam.token(sub=f"device:{LAMP}")))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "principal_gone"


def test_a_key_shorter_than_2048_bits_verifies_nothing(cold_start, signing_keys):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.support.lambda_env import SigningKey

    # The weak key is the point: the handler must refuse it.
    weak = SigningKey("kid-weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505
    lam = cold_start()
    lam.keys = {**signing_keys, "a": weak}
    lam.put_keyring()
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.VIEW)])

    assert lam.invoke(lam.event("test_invoke", lam.token()))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "unknown_kid"


def test_a_stalled_table_is_a_logged_refusal_within_the_budget(alice, black_hole):
    import boto3

    from lambda_bridge.store import _CLIENT_CONFIG, DynamoStore

    assert alice.invoke(alice.event("test_invoke", alice.token()))["isAuthenticated"]  # keys cached
    stalled = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=black_hole, config=_CLIENT_CONFIG,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    alice.handler.authorizer.store = DynamoStore(stalled, alice.table.name)

    response = alice.invoke(alice.event("test_invoke", alice.token()))

    assert response["isAuthenticated"] is False
    assert alice.last_log["reason"] == "snapshot_unavailable"
    assert alice.last_log["detail"] == "ReadTimeoutError"


def test_an_unexpected_error_is_a_refusal_in_the_contract(alice, monkeypatch):
    from lambda_bridge import policy

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(policy, "user_documents", broken)

    assert alice.invoke(alice.event("test_invoke", alice.token()))["isAuthenticated"] is False
    assert (alice.last_log["reason"], alice.last_log["detail"]) == ("internal_error", "RuntimeError")


def test_a_snapshot_level_this_reader_does_not_know_is_refused(lam):
    item = snapshot.to_item(snapshot.Snapshot("u", 1, "7", 1, int(time.time())), fmt=1)
    item["e"] = {"S": json.dumps([[LAMP, 0, None, None, None]])}
    lam.put_item(item)

    assert lam.invoke(lam.event("test_invoke", lam.token()))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "bad_snapshot"


@pytest.fixture
def black_hole():
    """A TCP server that accepts and never answers: a stalled endpoint."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
