"""The compact token format (lambda_bridge/compact.py,
docs/authorizer.md#compact-device-tokens): one spelling only, each deviation
refused with its reason before any key is asked for, and interoperable with
an independent CBOR codec (cbor2) and Ed25519 (cryptography) following
RFC 9052 and RFC 8392 directly."""
import math
import time

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bridge import compact
from lambda_bridge.refusal import Refused
from tests.lambda_bridge.compact_support import CompactKey, b64url, swap_claims, unb64url

KEY = CompactKey(Ed25519PrivateKey.generate())
DEMO_THING = "demo-front-lock"
NOW = int(time.time())


def ours(thing=DEMO_THING, *, tenant=1, issued_at=NOW, expires=NOW + 3600, key=KEY) -> str:
    return key.token(thing, tenant=tenant, issued_at=issued_at, expires=expires)


def refused(token) -> tuple[str, str]:
    with pytest.raises(Refused) as caught:
        compact.parse(token)
    return caught.value.reason, caught.value.detail


# --- the independent implementation (RFC 9052 §4.4, RFC 8392) -----------------------


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def theirs(*, protected=None, unprotected=None, payload=None, tag=None, signature=None,
           key: Ed25519PrivateKey = KEY.private) -> str:
    """A COSE_Sign1 built with cbor2 and signed over its real Sig_structure, so
    that whatever it changes is the only thing wrong with it. Byte strings
    are taken as already encoded."""
    if not isinstance(protected, bytes):
        protected = cbor2.dumps({1: -8, 4: KEY.kid} if protected is None else protected)
    if not isinstance(payload, bytes):
        payload = cbor2.dumps({2: DEMO_THING, 4: NOW + 3600, 6: NOW, "tid": 1} if payload is None else payload)
    if signature is None:
        signature = key.sign(sig_structure(protected, payload))
    message = [protected, {} if unprotected is None else unprotected, payload, signature]
    return b64url(cbor2.dumps(cbor2.CBORTag(tag, message) if tag is not None else message))


# --- round trip and interoperability --------------------------------------------------


def test_a_token_round_trips():
    claims = compact.CompactClaims(thing=DEMO_THING, tenant=42, issued_at=NOW, expires=NOW + 600)
    token = compact.encode(claims, kid=KEY.kid, sign=KEY.private.sign)

    assert compact.verify(token, {KEY.kid: KEY.private.public_key()}.get) == claims


def test_a_token_built_by_the_independent_code_verifies_with_ours():
    token = theirs(payload={2: "d-sensor:7", 4: NOW + 900, 6: NOW - 5, "tid": 300})

    found = compact.verify(token, {KEY.kid: KEY.private.public_key()}.get)

    assert found == compact.CompactClaims(thing="d-sensor:7", tenant=300, issued_at=NOW - 5, expires=NOW + 900)


def test_ours_decodes_and_verifies_with_the_independent_code():
    raw = unb64url(ours(tenant=70_000))
    message = cbor2.loads(raw)

    assert isinstance(message, list) and len(message) == 4  # untagged COSE_Sign1
    protected, unprotected, payload, signature = message
    assert cbor2.loads(protected) == {1: -8, 4: KEY.kid}
    assert unprotected == {}
    assert cbor2.loads(payload) == {2: DEMO_THING, 4: NOW + 3600, 6: NOW, "tid": 70_000}
    KEY.private.public_key().verify(signature, sig_structure(protected, payload))  # raises if not


def test_ours_is_cbors_deterministic_encoding():
    """RFC 8949 §4.2: shortest forms, definite lengths, keys in order; the
    independent encoder writes exactly our bytes."""
    raw = unb64url(ours(tenant=65_535))

    assert cbor2.dumps(cbor2.loads(raw), canonical=True) == raw


# --- sizes ----------------------------------------------------------------------------


def cbor_head(value: int) -> int:
    """Bytes of a CBOR head for `value` (RFC 8949 §3)."""
    return 1 if value < 24 else 2 if value < 256 else 3 if value < 65_536 else 5 if value < 2**32 else 9


def expected_chars(name_length: int, tenant: int, *, times: int = NOW) -> int:
    """The token's length counted from the layout in the docs, independently
    of the encoder: payload {2: text, 4: uint, 6: uint, "tid": uint}, a
    3-byte kid, a 64-byte signature, base64url without padding."""
    payload = 1 + (1 + cbor_head(name_length) + name_length) + 2 * (1 + cbor_head(times)) + 4 + cbor_head(tenant)
    protected = 1 + 1 + 1 + 1 + (1 + 3)
    raw = 1 + (1 + protected) + 1 + (cbor_head(payload) + payload) + (2 + 64)
    return math.ceil(raw * 4 / 3)


def longest_name(tenant: int) -> int:
    return max(n for n in range(1, 129) if expected_chars(n, tenant) <= compact.MAX_CHARS)


def test_the_demo_thing_gives_152_characters():
    token = ours(DEMO_THING, tenant=1)

    assert len(token) == expected_chars(len(DEMO_THING), 1) == 152


@pytest.mark.parametrize("tenant", [1, 23, 24, 255, 256, 65_535, 65_536])
def test_the_encoder_writes_what_the_layout_counts(tenant):
    for length in (1, 15, 23, 24, 40, 60):
        assert len(ours("x" * length, tenant=tenant)) == expected_chars(length, tenant)


@pytest.mark.parametrize("tenant, longest", [(23, 50), (255, 49), (65_535, 48), (2**32 - 1, 46)])
def test_which_thing_names_fit_in_200_characters(tenant, longest):
    """Tenant ids under 24, 256, 65,536 and 2**32: the longest thing name whose
    token fits, by the count above, and the encoder agrees at the edge."""
    assert longest_name(tenant) == longest
    fits, too_long = ours("n" * longest, tenant=tenant), ours("n" * (longest + 1), tenant=tenant)

    assert len(fits) <= compact.MAX_CHARS < len(too_long)
    assert compact.parse(fits).claims.thing == "n" * longest
    assert refused(too_long)[0] == "token_too_large"


# --- one spelling only ----------------------------------------------------------------


def _payload_bytes(*pairs: bytes) -> bytes:
    """A payload map spelled by hand, for spellings cbor2 will not write;
    each argument is one key and its value."""
    return bytes([0xA0 | len(pairs)]) + b"".join(pairs)


def _long_form_envelope() -> str:
    """The COSE_Sign1's array header in a long form (0x98 0x04 for 4)."""
    return b64url(b"\x98\x04" + unb64url(theirs())[1:])


SUB = b"\x02" + bytes([0x60 | len(DEMO_THING)]) + DEMO_THING.encode()
EXP = b"\x04\x1a" + (NOW + 3600).to_bytes(4, "big")
IAT = b"\x06\x1a" + NOW.to_bytes(4, "big")
TID = b"\x63tid\x01"


def _with_trailing_byte() -> str:
    return b64url(unb64url(theirs()) + b"\x00")


def _indefinite_signature() -> str:
    """The signature as an indefinite-length byte string of two chunks."""
    protected = cbor2.dumps({1: -8, 4: KEY.kid})
    payload = cbor2.dumps({2: DEMO_THING, 4: NOW + 3600, 6: NOW, "tid": 1})
    signature = KEY.private.sign(sig_structure(protected, payload))
    raw = (b"\x84" + cbor2.dumps(protected) + b"\xa0" + cbor2.dumps(payload)
           + b"\x5f" + cbor2.dumps(signature[:32]) + cbor2.dumps(signature[32:]) + b"\xff")
    return b64url(raw)


def _stray_bits() -> str:
    """A token whose length leaves unused bits in its last character, with
    those bits set: it decodes to the same bytes."""
    token = ours("d-sixteen-chars1")
    assert len(token) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = token[:-1] + alphabet[alphabet.index(token[-1]) | 1]
    assert respelled != token and unb64url(respelled) == unb64url(token)
    return respelled


DEVIATIONS = {
    # the envelope
    "COSE_Sign1 tag 18": (lambda: theirs(tag=18), "malformed_token"),
    "CWT tag 61": (lambda: theirs(tag=61), "malformed_token"),
    "an unprotected header": (lambda: theirs(unprotected={4: KEY.kid}), "malformed_token"),
    "bytes after the end": (_with_trailing_byte, "malformed_token"),
    "indefinite-length signature": (_indefinite_signature, "malformed_token"),
    "signature of 63 bytes": (lambda: theirs(signature=b"s" * 63), "malformed_token"),
    "signature of 65 bytes": (lambda: theirs(signature=b"s" * 65), "malformed_token"),
    "a COSE_Sign1 of three parts": (lambda: b64url(cbor2.dumps(cbor2.loads(unb64url(theirs()))[:3])),
                                    "malformed_token"),
    # the protected header
    "alg ES256 (-7)": (lambda: theirs(protected={1: -7, 4: KEY.kid}), "unsupported_alg"),
    "alg as text": (lambda: theirs(protected={1: "EdDSA", 4: KEY.kid}), "malformed_token"),
    "kid before alg": (lambda: theirs(protected={4: KEY.kid, 1: -8}), "malformed_token"),
    "no kid": (lambda: theirs(protected={1: -8}), "malformed_token"),
    "an extra header (content type)": (lambda: theirs(protected={1: -8, 4: KEY.kid, 3: 61}), "malformed_token"),
    "empty kid": (lambda: theirs(protected={1: -8, 4: b""}), "malformed_token"),
    "kid of 9 bytes": (lambda: theirs(protected={1: -8, 4: b"k" * 9}), "malformed_token"),
    "kid as text": (lambda: theirs(protected={1: -8, 4: "kid"}), "malformed_token"),
    # the claims
    "no tenant": (lambda: theirs(payload={2: DEMO_THING, 4: NOW + 3600, 6: NOW}), "malformed_token"),
    "an extra claim (jti)": (lambda: theirs(payload={2: DEMO_THING, 4: NOW + 3600, 6: NOW, "tid": 1, 7: b"j"}),
                             "malformed_token"),
    "exp before sub": (lambda: theirs(payload={4: NOW + 3600, 2: DEMO_THING, 6: NOW, "tid": 1}),
                       "malformed_token"),
    "tenant under claim key 7": (lambda: theirs(payload={2: DEMO_THING, 4: NOW + 3600, 6: NOW, 7: 1}),
                                 "malformed_token"),
    "exp a float": (lambda: theirs(payload={2: DEMO_THING, 4: NOW + 3600.5, 6: NOW, "tid": 1}), "malformed_token"),
    "exp negative": (lambda: theirs(payload={2: DEMO_THING, 4: -1, 6: NOW, "tid": 1}), "malformed_token"),
    "exp past 2**63": (lambda: theirs(payload={2: DEMO_THING, 4: 2**63, 6: NOW, "tid": 1}), "invalid_claims"),
    "tenant as text": (lambda: theirs(payload={2: DEMO_THING, 4: NOW + 3600, 6: NOW, "tid": "1"}),
                       "malformed_token"),
    "sub as bytes": (lambda: theirs(payload={2: DEMO_THING.encode(), 4: NOW + 3600, 6: NOW, "tid": 1}),
                     "malformed_token"),
    "sub with a wildcard": (lambda: theirs(payload={2: "d-*", 4: NOW + 3600, 6: NOW, "tid": 1}), "invalid_claims"),
    "sub with a slash": (lambda: theirs(payload={2: "d/a", 4: NOW + 3600, 6: NOW, "tid": 1}), "invalid_claims"),
    "sub empty": (lambda: theirs(payload={2: "", 4: NOW + 3600, 6: NOW, "tid": 1}), "invalid_claims"),
    "sub not UTF-8": (lambda: theirs(payload=_payload_bytes(b"\x02\x62\xc3\x28", EXP, IAT, TID)),
                      "malformed_token"),
    "tenant in a long form (0x18 0x01)": (lambda: theirs(payload=_payload_bytes(SUB, EXP, IAT, b"\x63tid\x18\x01")),
                                          "malformed_token"),
    "exp in 8 bytes": (lambda: theirs(payload=_payload_bytes(SUB, b"\x04\x1b" + (NOW + 3600).to_bytes(8, "big"),
                                                             IAT, TID)), "malformed_token"),
    "indefinite-length claims map": (lambda: theirs(payload=b"\xbf" + SUB + EXP + IAT + TID + b"\xff"),
                                     "malformed_token"),
    "indefinite-length sub": (lambda: theirs(payload=_payload_bytes(
        b"\x02\x7f" + cbor2.dumps(DEMO_THING[:4]) + cbor2.dumps(DEMO_THING[4:]) + b"\xff", EXP, IAT, TID)),
        "malformed_token"),
    "claims bytes after the map": (lambda: theirs(payload=_payload_bytes(SUB, EXP, IAT, TID) + b"\x00"),
                                   "malformed_token"),
    "the envelope's length in a long form": (_long_form_envelope, "malformed_token"),
    # the text
    "padded with =": (lambda: ours() + "=", "malformed_token"),
    "padded with ==": (lambda: ours("d-sixteen-chars1") + "==", "malformed_token"),
    "stray bits in the last character": (_stray_bits, "malformed_token"),
    "standard alphabet (+)": (lambda: ours()[:-1] + "+", "malformed_token"),
    "standard alphabet (/)": (lambda: "/" + ours()[1:], "malformed_token"),
    "a space": (lambda: ours()[:50] + " " + ours()[50:], "malformed_token"),
    "not ASCII": (lambda: ours()[:-1] + "\u00e9", "malformed_token"),
    "a length no base64 has": (lambda: ours() + "A", "malformed_token"),
    "empty": (lambda: "", "malformed_token"),
    "201 characters": (lambda: "A" * 201, "token_too_large"),
    "a 60-character thing name": (lambda: ours("t" * 60), "token_too_large"),
    "bytes, not text": (lambda: unb64url(ours()), "malformed_token"),
}


@pytest.mark.parametrize("case", DEVIATIONS)
def test_each_deviation_is_refused_with_its_reason(case):
    make, reason = DEVIATIONS[case]

    assert refused(make())[0] == reason


def test_the_deviations_are_signed_like_the_good_token():
    """Guards the table: the independent builder's unchanged token is accepted,
    so each case fails for its deviation alone."""
    assert compact.verify(theirs(), {KEY.kid: KEY.private.public_key()}.get).thing == DEMO_THING
    # The hand-spelled payload the long-form cases start from is accepted as it is.
    by_hand = theirs(payload=_payload_bytes(SUB, EXP, IAT, TID))
    assert compact.verify(by_hand, {KEY.kid: KEY.private.public_key()}.get).thing == DEMO_THING


# --- signatures and kids --------------------------------------------------------------


def test_an_unknown_kid_is_refused_before_any_signature_check():
    asked = []

    def key_for(kid):
        asked.append(kid)

    with pytest.raises(Refused) as caught:
        compact.verify(ours(), key_for)
    assert caught.value.reason == "unknown_kid" and asked == [KEY.kid]


def test_a_malformed_token_never_asks_for_a_key():
    asked = []
    with pytest.raises(Refused):
        compact.verify(ours()[:-2], asked.append)
    assert asked == []


def test_claims_changed_under_a_good_signature_are_refused():
    forged = swap_claims(ours(tenant=1), ours(tenant=2))

    with pytest.raises(Refused) as caught:
        compact.verify(forged, {KEY.kid: KEY.private.public_key()}.get)
    assert caught.value.reason == "bad_signature"


def test_a_known_kid_signed_by_another_key_is_refused():
    other = Ed25519PrivateKey.generate()
    token = theirs(key=other)  # protected header names KEY's kid

    with pytest.raises(Refused) as caught:
        compact.verify(token, {KEY.kid: KEY.private.public_key()}.get)
    assert caught.value.reason == "bad_signature"


def test_the_kid_is_three_bytes_of_the_public_keys_digest():
    import hashlib

    assert KEY.kid == hashlib.sha256(KEY.public_raw).digest()[:3]


# --- anything in, a refusal or claims out ---------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=260))
def test_any_text_is_parsed_or_refused(text):
    try:
        compact.parse(text)
    except Refused as refusal:
        assert refusal.reason in ("malformed_token", "token_too_large", "unsupported_alg", "invalid_claims")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=160))
def test_any_bytes_in_base64url_are_parsed_or_refused(raw):
    try:
        compact.parse(b64url(raw))
    except Refused as refusal:
        assert refusal.reason in ("malformed_token", "token_too_large", "unsupported_alg", "invalid_claims")


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.binary(max_size=70)
    | st.text(max_size=20) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers(-10, 10) | st.text(max_size=4),
                                                                inner, max_size=5),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(protected=st.dictionaries(st.integers(-10, 10), CBOR_VALUES, max_size=3), unprotected=CBOR_VALUES,
       payload=st.dictionaries(st.integers(0, 8) | st.just("tid"), CBOR_VALUES, max_size=5),
       signature=st.binary(min_size=60, max_size=68), tag=st.none() | st.sampled_from([18, 61, 98]))
def test_any_cose_shaped_value_is_parsed_or_refused(protected, unprotected, payload, signature, tag):
    """Near misses reach the inner checks, which random text rarely does."""
    token = theirs(protected=protected, unprotected=unprotected, payload=payload, tag=tag, signature=signature)
    try:
        compact.parse(token)
    except Refused as refusal:
        assert refusal.reason in ("malformed_token", "token_too_large", "unsupported_alg", "invalid_claims")


@given(st.binary(max_size=300))
def test_bytes_given_as_the_token_are_refused(raw):
    assert refused(raw)[0] == "malformed_token"
