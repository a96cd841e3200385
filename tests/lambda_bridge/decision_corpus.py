"""A fixed corpus of authorizer decisions, to prove that a faster authorizer
answers exactly as the one it replaced.

Every input is deterministic: test keys kept in fixtures/corpus_keys.json, a
frozen clock, fixed claims (RS256 signatures with PKCS#1 v1.5 and Ed25519
signatures are themselves deterministic). Each case records the answer AWS
gets (the response as JSON text) and what the log line says about it
(source, credential, principal, tenant, decision, reason, devices); the
free-text detail is left out. JWT events are the signed authorizer's
(signatureVerified true); compact tokens are sent to the unsigned one.

    .venv/bin/python -m tests.lambda_bridge.decision_corpus   # rewrite the fixture

Only rewrite it on purpose: the point of the file is that it was recorded from
the code before a change. tests/lambda_bridge/test_decision_corpus.py replays it.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from urllib.parse import quote

import cbor2
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lambda_bridge import compact, keys, snapshot
from lambda_bridge.authorizer import Authorizer
from lambda_bridge.config import Config
from lambda_bridge.snapshot import CONTROL, MANAGE, OWNER, VIEW, Entry
from tests.lambda_bridge.compact_support import swap_claims, unb64url

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "decision_corpus.json"
KEYS = FIXTURES / "corpus_keys.json"

NOW = 1_800_000_000
ISSUER, AUDIENCE, ACCOUNT, REGION, KEY_NAME = "https://devshare.test", "devshare-iot", "123456789012", "eu-west-1", \
    "devshare-token"
CONFIGS = {
    "default": Config(table="t", issuer=ISSUER, audience=AUDIENCE, account=ACCOUNT, region=REGION,
                      table_region="us-east-1", token_key_name=KEY_NAME),
    "tuned": Config(table="t", issuer=ISSUER, audience=AUDIENCE, account=ACCOUNT, region="ap-southeast-2",
                    table_region="us-east-1", token_key_name=KEY_NAME, refresh_seconds=900,
                    disconnect_seconds=3600, leeway_seconds=0),
}
LAMP, LOCK, OVEN = "d-lamp00000001", "d-lock00000001", "d-oven00000001"
ODD_NAMES = ["a", "A:b_c-d", "0", "thing:with:colons", "x" * 128, "_-_", "Zz9:"]


# --- stored inputs ------------------------------------------------------------


class DictStore:
    def __init__(self, items: dict):
        self.items = items

    def get(self, key):
        return self.items.get(key)


def item_to_json(item: dict) -> dict:
    return {name: ({"B": base64.b64encode(v["B"]).decode()} if "B" in v else v) for name, v in item.items()}


def item_from_json(item: dict) -> dict:
    return {name: ({"B": base64.b64decode(v["B"])} if "B" in v else v) for name, v in item.items()}


def load_corpus() -> dict:
    corpus = json.loads(CORPUS.read_text())
    for store in corpus["stores"].values():
        for key, item in store.items():
            store[key] = item_from_json(item)
    return corpus


def answer(corpus_case: dict, stores: dict) -> dict:
    """What the authorizer of this checkout answers to one case."""
    authorizer = Authorizer(CONFIGS[corpus_case["config"]], DictStore(stores[corpus_case["store"]]),
                            clock=lambda: corpus_case["now"], monotonic=lambda: 0.0)
    decision = authorizer.decide(corpus_case["event"])
    return {
        "response": json.dumps(decision.response()),
        "log": {"source": decision.source, "credential": decision.credential, "principal": decision.principal,
                "tenant": decision.tenant,
                "decision": "allow" if decision.allowed else "deny", "reason": decision.reason,
                "devices": decision.devices},
    }


# --- building the corpus ------------------------------------------------------


def _keys() -> dict:
    """The corpus's private keys: RSA ones for JWTs (a, b, stranger) and
    Ed25519 ones for compact tokens (ca, cb, cstranger). A name missing from
    the file is generated once and kept, so existing keys never change."""
    stored = json.loads(KEYS.read_text()) if KEYS.exists() else {}
    missing = {name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
               for name in ("a", "b", "stranger") if name not in stored}
    missing |= {name: Ed25519PrivateKey.generate() for name in COMPACT_KEYS if name not in stored}
    if missing:
        FIXTURES.mkdir(exist_ok=True)
        stored |= {name: key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode() for name, key in missing.items()}
        KEYS.write_text(json.dumps(stored, indent=1) + "\n")
    return {name: serialization.load_pem_private_key(pem.encode(), None) for name, pem in stored.items()}


def _public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


KID = {"a": "kid-a-corpus", "b": "kid-b-corpus", "stranger": "kid-stranger"}
COMPACT_KEYS = ("ca", "cb", "cstranger")


def _raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _compact_kid(private, name: str) -> bytes:
    return compact.kid_for(_raw(private[name]))


def _keyring_item(private, *, a=keys.ACTIVE, b=keys.STAGED, compact_halves=True) -> dict:
    slots = {}
    for name, state in (("A", a), ("B", b)):
        if state:
            half = _raw(private["c" + name.lower()]) if compact_halves else b""
            slots[name] = keys.KeySlot(kid=KID[name.lower()], pem=_public(private[name.lower()]), state=state,
                                       compact_kid=keys.b64(compact.kid_for(half)) if half else "",
                                       compact_public=keys.b64(half) if half else "")
    active = next((n for n, s in slots.items() if s.state == keys.ACTIVE), None)
    return keys.to_item(keys.Keyring(version=1, slots=slots, active=active))


def _snap(kind, tenant, principal, entries=(), *, gone=False, fmt=2, cutoff=None) -> tuple[str, dict]:
    snap = snapshot.Snapshot(kind=kind, tenant=tenant, principal=principal, version=7, generated_at=NOW - 100,
                             entries=tuple(entries), gone=gone, cutoff=cutoff)
    return snap.key, snapshot.to_item(snap, fmt=fmt)


def _mixed(count: int, prefix: str) -> list[Entry]:
    """Levels, groups and windows cycling, all in force at NOW unless noted."""
    levels = [VIEW, CONTROL, MANAGE, OWNER]
    out = []
    for i in range(count):
        window = i % 5
        out.append(Entry(f"{prefix}{i:08d}", levels[i % 4],
                         not_before=NOW - 3600 if window == 1 else (NOW + 7200 if window == 4 and i > 5 else None),
                         expires=NOW + 5000 + i if window == 2 else (NOW + 100 if window == 3 and i > 5 else None),
                         group=(i % 3) + 1 if i % 2 else None))
    return out


def _stores(private) -> dict[str, dict]:
    main = dict([
        (keys.ITEM_KEY, _keyring_item(private)),
        _snap("u", 1, "7", [Entry(LAMP, CONTROL), Entry(LOCK, VIEW)]),
        _snap("u", 1, "8", [Entry(LAMP, CONTROL, group=5), Entry(LOCK, VIEW, group=6)], fmt=1),
        _snap("u", 1, "9"),
        _snap("u", 1, "10", [Entry(LAMP, VIEW, expires=NOW + 4000)]),
        _snap("u", 1, "11", _mixed(10, "d-ten")),
        _snap("u", 1, "12", _mixed(10, "d-ten"), fmt=1),
        _snap("u", 1, "13", _mixed(300, "d-many")),
        _snap("u", 1, "14", [Entry(f"d-fit{i:08d}", VIEW if i % 2 else CONTROL) for i in range(40)]),
        _snap("u", 1, "15", gone=True),
        _snap("u", 1, "17", [Entry(name, CONTROL if len(name) % 2 else VIEW, group=2) for name in ODD_NAMES]),
        _snap("u", 1, "18", [Entry(LAMP, VIEW, not_before=NOW - 10, expires=NOW + 900),
                             Entry(LAMP, OWNER, not_before=NOW + 600), Entry(LAMP, CONTROL, expires=NOW + 300),
                             Entry(LOCK, CONTROL, expires=NOW + 400), Entry(LOCK, VIEW, expires=NOW - 1),
                             Entry(OVEN, MANAGE, not_before=NOW + 10)]),
        _snap("u", 1, "19", [Entry(f"d-hundred{i:06d}", VIEW) for i in range(100)], fmt=1),
        _snap("u", 1, "24", [Entry(f"d-view{i:08d}", VIEW) for i in range(40)], fmt=1),  # the most that fit
        _snap("u", 1, "25", [Entry(f"d-ctrl{i:08d}", CONTROL) for i in range(26)]),
        _snap("u", 1, "26", [Entry(f"d-half{i:08d}", (VIEW, OWNER)[i % 2]) for i in range(31)]),
        _snap("u", 1, "27", [Entry(f"d-half{i:08d}", (VIEW, OWNER)[i % 2]) for i in range(32)]),
        _snap("u", 1, "28", [Entry(f"d-bench{i:07d}", (VIEW, CONTROL)[i % 2], expires=NOW + 86400) for i in range(10)]),
        _snap("u", 2, "7", [Entry(LAMP, OWNER)]),
        _snap("d", 1, LAMP, [Entry(LAMP, OWNER)]),
        _snap("d", 1, "d-window0001", [Entry("d-window0001", OWNER, expires=NOW + 2000)]),
        _snap("d", 1, LOCK, gone=True),
        _snap("d", 1, OVEN, [Entry(LAMP, OWNER)]),
        _snap("d", 1, "x" * 128, [Entry("x" * 128, OWNER)]),
        # Token cut-offs (format 3) around the corpus tokens' iat, NOW - 60.
        _snap("u", 1, "29", [Entry(LAMP, CONTROL)], fmt=3, cutoff=NOW - 61),
        _snap("u", 1, "30", [Entry(LAMP, CONTROL)], fmt=3, cutoff=NOW - 60),
        _snap("u", 1, "31", [Entry(LAMP, CONTROL)], fmt=3, cutoff=NOW - 59),
        _snap("u", 1, "32", gone=True, fmt=3, cutoff=NOW),
        _snap("d", 1, "d-moved00001", [Entry("d-moved00001", OWNER)], fmt=3, cutoff=NOW - 10),
        # A grant ending at the edge: within GRANT_END_MARGIN (10 s) and just past it.
        _snap("u", 1, "35", [Entry(LAMP, CONTROL, expires=NOW + 9), Entry(LOCK, VIEW, expires=NOW + 10)], fmt=3),
    ])
    main["u#1#16"] = _snap("u", 1, "99", [Entry(LAMP, OWNER)])[1]  # someone else's item under 16's key
    bad_level = _snap("u", 1, "20", [Entry(LAMP, VIEW)], fmt=1)[1]
    bad_level["e"] = {"S": json.dumps([[LAMP, 9, None, None, None]])}
    main["u#1#20"] = bad_level
    future = _snap("u", 1, "21", [Entry(LAMP, VIEW)])[1]
    future["f"] = {"N": "5"}  # 4 when recorded; format 4 became readable with schedules
    main["u#1#21"] = future
    # A cut-off in a format-2 item is still a cut-off; a malformed one is a bad snapshot.
    older = _snap("u", 1, "33", [Entry(LAMP, VIEW)])[1]
    older["c"] = {"N": str(NOW)}
    main["u#1#33"] = older
    malformed = _snap("u", 1, "34", [Entry(LAMP, VIEW)], fmt=3)[1]
    malformed["c"] = {"S": str(NOW)}
    main["u#1#34"] = malformed
    bad_header = _snap("u", 1, "22", [Entry(LAMP, VIEW)])[1]
    bad_header["e"] = {"B": b"\xc1\x01x"}
    main["u#1#22"] = bad_header
    extra = _snap("u", 1, "23", [Entry(LAMP, VIEW)])[1]
    extra["zz"] = {"S": "a later writer's attribute"}
    main["u#1#23"] = extra
    return {
        "main": main,
        "no_keys": {k: v for k, v in main.items() if k != keys.ITEM_KEY},
        "broken_keys": {**main, keys.ITEM_KEY: {"pk": {"S": keys.ITEM_KEY}, "f": {"N": "9"}}},
        "rotated": {**main, keys.ITEM_KEY: _keyring_item(private, a=keys.RETIRED, b=keys.ACTIVE)},
        "rsa_only": {**main, keys.ITEM_KEY: _keyring_item(private, compact_halves=False)},
        "retiring": {**main, keys.ITEM_KEY: _keyring_item(private, a=keys.RETIRING, b=keys.ACTIVE)},
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Tokens:
    def __init__(self, private):
        self.private = private
        self.count = 0

    def claims(self, sub="user:7", tid=1, cid=None, **extra) -> dict:
        self.count += 1
        if cid is None:
            kind, _, principal = sub.partition(":")
            cid = principal if kind == "device" else f"u{tid}.{principal}.app"
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tid": tid, "cid": cid, "iat": NOW - 60,
                   "nbf": NOW - 60, "exp": NOW + 3600, "jti": f"jti-{self.count:04d}"}
        payload.update(extra)
        return {k: v for k, v in payload.items() if v is not None}

    def token(self, key="a", signer=None, alg="RS256", headers=None, **claims) -> str:
        signer = signer or key
        header = {"kid": KID[key], **(headers or {})}
        if alg == "RS256":  # raw, so that claims PyJWT would refuse to write can be tested
            return self.raw({"alg": alg, "typ": "JWT", **header}, self.claims(**claims), key=signer)
        return jwt.encode(self.claims(**claims), self.private[signer] if alg.startswith("RS") else "s" * 64,
                          algorithm=alg, headers=header)

    def raw(self, header: dict | bytes, payload: dict | bytes, key="a") -> str:
        """Any header, any payload, signed by `key`."""
        parts = [p if isinstance(p, bytes) else json.dumps(p, separators=(",", ":")).encode()
                 for p in (header, payload)]
        signing_input = ".".join(_b64url(p) for p in parts)
        signature = self.private[key].sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


def _event(where: str, token: str, client_id: str | None = "u1.7.app", *, signed: bool | None = True) -> dict:
    """`token` sent `where`; at the signed authorizer unless `signed` is False
    (None: signatureVerified left out, which is the unsigned one too)."""
    mqtt = {"clientId": client_id} if client_id else {}
    if where == "token":
        event = {"token": token, "protocols": ["tls", "mqtt"], "protocolData": {"mqtt": mqtt},
                 "connectionMetadata": {"id": "conn-1"}}
    elif where == "mqtt_password":
        event = {"protocolData": {"mqtt": {**mqtt, "username": "phone?x-amz-customauthorizer-name=devshare",
                                           "password": base64.b64encode(token.encode()).decode()}}}
    elif where == "mqtt_username":
        event = {"protocolData": {"mqtt": {**mqtt, "username": f"phone?{KEY_NAME}={quote(token, safe='')}"}}}
    elif where == "http_header":
        event = {"protocolData": {"http": {"headers": {"Devshare-Token": token, "Host": "x"}, "queryString": ""}}}
    elif where == "query_string":
        event = {"protocolData": {"http": {"headers": {}, "queryString": f"?a=b&{KEY_NAME}={quote(token, safe='')}"},
                                  "mqtt": mqtt}}
    else:
        raise ValueError(where)
    if signed is not None:
        event["signatureVerified"] = signed
    return event


def _cases(private) -> list[tuple[str, str, str, dict]]:
    """(name, store, config, event)"""
    t = Tokens(private)
    cases = []

    def add(name, event, store="main", config="default"):
        cases.append((name, store, config, event))

    for where in ("token", "mqtt_password", "mqtt_username", "http_header", "query_string"):
        add(f"alice via {where}", _event(where, t.token()))
        add(f"alice via {where}, tuned config", _event(where, t.token()), config="tuned")
    add("client id mismatch", _event("token", t.token(), client_id="u1.7.other"))
    add("no client id in the event", _event("token", t.token(cid="u1.7.phone-1"), client_id=None))
    for user in ("8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23",
                 "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "404"):
        for config in CONFIGS:
            add(f"user {user}, {config}", _event("token", t.token(sub=f"user:{user}"), client_id=None),
                config=config)
    add("tenant 2 user 7", _event("token", t.token(tid=2), client_id=None))
    # scopes
    for name, scope in [
        ("things, one", {"things": [LAMP]}), ("things, absent", {"things": ["d-nothere"]}),
        ("group 5", {"group": 5}), ("group 1", {"group": 1}), ("group 99", {"group": 99}),
        ("things of the many", {"things": [f"d-many{i:08d}" for i in range(0, 40, 4)]}),
        ("things, 150", {"things": [f"d-many{i:08d}" for i in range(150)]}),
        ("things, 200 short", {"things": [f"t{i}" for i in range(199)] + [LAMP]}),
        ("things, 201 short", {"things": [f"t{i}" for i in range(200)] + [LAMP]}),
        ("things, empty", {"things": []}), ("things, wildcard", {"things": ["d-*"]}),
        ("group as string", {"group": "5"}), ("two keys", {"group": 1, "things": [LAMP]}),
        ("not an object", ["x"]), ("unknown shape", {"everything": True}),
    ]:
        for user in ("7", "8", "13", "17"):
            add(f"scope {name}, user {user}", _event("token", t.token(sub=f"user:{user}", scope=scope),
                                                     client_id=None))
    # devices
    add("device lamp", _event("token", t.token(sub=f"device:{LAMP}"), client_id=LAMP))
    add("device lamp, tuned", _event("mqtt_password", t.token(sub=f"device:{LAMP}"), client_id=LAMP), config="tuned")
    add("device moved (cut-off after its token)", _event("token", t.token(sub="device:d-moved00001"),
                                                          client_id=None))
    add("device moved, token issued after the cut-off",
        _event("token", t.token(sub="device:d-moved00001", iat=NOW - 5, nbf=NOW - 5), client_id=None))
    add("device with a window", _event("token", t.token(sub="device:d-window0001"), client_id=None))
    add("device gone", _event("token", t.token(sub=f"device:{LOCK}"), client_id=None))
    add("device not in its snapshot", _event("token", t.token(sub=f"device:{OVEN}"), client_id=None))
    add("device 128-char name", _event("token", t.token(sub="device:" + "x" * 128), client_id=None))
    add("device without snapshot", _event("token", t.token(sub="device:d-nope"), client_id=None))
    add("device as another client", _event("token", t.token(sub=f"device:{LAMP}", cid="other"), client_id=None))
    add("device with scope", _event("token", t.token(sub=f"device:{LAMP}", scope={"things": [LAMP]}), client_id=None))
    add("device wildcard name", _event("token", t.token(sub="device:d-*", cid="d-*"), client_id=None))
    # keys
    add("key b (staged) verifies", _event("token", t.token(key="b")))
    add("stranger kid", _event("token", t.token(key="stranger")))
    add("a's kid, stranger's signature", _event("token", t.token(signer="stranger")))
    add("no key item", _event("token", t.token()), store="no_keys")
    add("broken key item", _event("token", t.token()), store="broken_keys")
    add("retired key a", _event("token", t.token()), store="rotated")
    add("active key b after rotation", _event("token", t.token(key="b")), store="rotated")
    add("retiring key a", _event("token", t.token()), store="retiring")
    # claims and times
    claim_cases = {
        "wrong audience": dict(aud="someone-else"), "audience list": dict(aud=["other", AUDIENCE]),
        "audience list of us": dict(aud=[AUDIENCE]), "empty audience": dict(aud=""), "audience number": dict(aud=5),
        "wrong issuer": dict(iss="https://evil.test"), "issuer number": dict(iss=5),
        "expired": dict(exp=NOW - 120), "expired a moment ago": dict(exp=NOW - 2), "expires now": dict(exp=NOW),
        "expires too soon": dict(exp=NOW + 299), "expires just in time": dict(exp=NOW + 300),
        "a refresh 20 s late": dict(exp=NOW + 310), "330 s left": dict(exp=NOW + 330),
        "630 s left": dict(exp=NOW + 630), "629 s left": dict(exp=NOW + 629),
        "expires in 10 min": dict(exp=NOW + 600), "expires in 2 days": dict(exp=NOW + 2 * 86400),
        "lifetime 31 days": dict(iat=NOW, nbf=NOW, exp=NOW + 31 * 86400),
        "lifetime over 31 days": dict(iat=NOW, nbf=NOW, exp=NOW + 31 * 86400 + 1),
        "nbf in leeway": dict(nbf=NOW + 30), "nbf past leeway": dict(nbf=NOW + 31), "iat future": dict(iat=NOW + 600),
        "no exp": dict(exp=None), "no nbf": dict(nbf=None), "no iat": dict(iat=None), "no jti": dict(jti=None),
        "no iss": dict(iss=None), "no aud": dict(aud=None), "no sub": dict(sub=None, cid="u1.7.app"),
        "exp string": dict(exp=str(NOW + 600)), "exp float": dict(exp=NOW + 600.5), "exp true": dict(exp=True),
        "exp huge": dict(exp=2**63), "tid true": dict(tid=True, cid="u1.7.app"), "tid string": dict(tid="1"),
        "tid negative": dict(tid=-1, cid="u-1.7.app"), "sub number": dict(sub=7, cid="u1.7.app"),
        "jti number": dict(jti=5), "sub admin": dict(sub="admin:7", cid="u1.7.app"),
        "sub user letters": dict(sub="user:abc"), "cid wildcard": dict(cid="u1.7.app*"), "cid $": dict(cid="$aws"),
        "cid another person": dict(cid="u1.8.app"), "cid another tenant": dict(cid="u2.7.app"),
        "cid device": dict(cid=LAMP), "cid number": dict(cid=7), "cid long suffix": dict(cid="u1.7." + "a" * 65),
        "extra claims": dict(pad="x" * 100, roles=["admin"]),
    }
    for name, claims in claim_cases.items():
        add(f"claims: {name}", _event("token", t.token(**claims), client_id=None))
        if name in ("nbf past leeway", "nbf in leeway", "iat future"):
            add(f"claims: {name}, no leeway", _event("token", t.token(**claims), client_id=None), config="tuned")
    # shapes of the token itself
    good = t.token()
    header, payload, signature = good.split(".")
    other_payload = t.token(sub="user:8").split(".")[1]
    wrong = {
        "alg none": jwt.encode(t.claims(), None, algorithm="none", headers={"kid": KID["a"]}),
        "HS256": t.token(alg="HS256"),
        "RS512": t.token(alg="RS512"),
        "RS256 key, RS512 header": t.raw({"alg": "RS512", "kid": KID["a"]}, t.claims()),
        "alg missing": t.raw({"kid": KID["a"]}, t.claims()),
        "alg lowercase": t.raw({"alg": "rs256", "kid": KID["a"]}, t.claims()),
        "kid missing": t.raw({"alg": "RS256"}, t.claims()),
        "kid number": t.raw({"alg": "RS256", "kid": 5}, t.claims()),
        "kid empty": t.raw({"alg": "RS256", "kid": ""}, t.claims()),
        "kid too long": t.raw({"alg": "RS256", "kid": "k" * 129}, t.claims()),
        "header not an object": t.raw(b'["RS256"]', t.claims()),
        "header not JSON": t.raw(b"{alg", t.claims()),
        "header with typ and extras": t.raw({"alg": "RS256", "kid": KID["a"], "typ": "JWT", "x": 1}, t.claims()),
        "header crit b64 true": t.raw({"alg": "RS256", "kid": KID["a"], "crit": ["b64"], "b64": True}, t.claims()),
        "header crit unknown": t.raw({"alg": "RS256", "kid": KID["a"], "crit": ["exp"], "exp": 1}, t.claims()),
        "header crit empty": t.raw({"alg": "RS256", "kid": KID["a"], "crit": []}, t.claims()),
        "header crit null": t.raw({"alg": "RS256", "kid": KID["a"], "crit": None}, t.claims()),
        "header crit b64 missing": t.raw({"alg": "RS256", "kid": KID["a"], "crit": ["b64"]}, t.claims()),
        "header b64 false with payload": t.raw({"alg": "RS256", "kid": KID["a"], "b64": False}, t.claims()),
        "header b64 false, empty payload": t.raw({"alg": "RS256", "kid": KID["a"], "b64": False}, b""),
        "header b64 false, crit, empty payload": t.raw({"alg": "RS256", "kid": KID["a"], "b64": False,
                                                        "crit": ["b64"]}, b""),
        "header b64 0": t.raw({"alg": "RS256", "kid": KID["a"], "b64": 0}, t.claims()),
        "payload not JSON": t.raw({"alg": "RS256", "kid": KID["a"]}, b"{exp"),
        "payload a list": t.raw({"alg": "RS256", "kid": KID["a"]}, b"[1]"),
        "payload a string": t.raw({"alg": "RS256", "kid": KID["a"]}, b'"x"'),
        "payload latin-1": t.raw({"alg": "RS256", "kid": KID["a"]}, b'{"x":"\xe9"}'),
        "payload duplicate sub": t.raw({"alg": "RS256", "kid": KID["a"]},
                                       json.dumps(t.claims()).replace('"sub": "user:7"',
                                                                      '"sub": "user:8", "sub": "user:7"').encode()),
        "payload swapped": f"{header}.{other_payload}.{signature}",
        "truncated 21": good[:-21],
        "truncated 1": good[:-1],
        "cut in half": good[:200],
        "cut in header": good[:15],
        "no signature": f"{header}.{payload}.",
        "no payload": f"{header}..{signature}",
        "no header": f".{payload}.{signature}",
        "two parts": f"{header}.{payload}",
        "four parts": f"{header}.{payload}.{signature}.{signature}",
        "five parts": f"{header}.{payload}.x.y.{signature}",
        "signature standard alphabet": f"{header}.{payload}.{signature.replace('-', '+').replace('_', '/')}",
        "signature last char non-canonical": f"{header}.{payload}.{signature[:-1]}{_bump(signature[-1])}",
        "signature with a space": f"{header}.{payload}. {signature}",
        "signature one = ": f"{header}.{payload}.{signature}=",
        "signature three =": f"{header}.{payload}.{signature}===",
        "header with padding =": (f"{header}=.{payload}.{signature}" if len(header) % 4 == 3 else
                                  f"{header}==.{payload}.{signature}"),
        "header non-canonical": _noncanonical(lambda n: t.token(headers={"x": "p" * n}), 0),
        "payload non-canonical": _noncanonical(lambda n: t.token(pad="p" * n), 1),
        "not ASCII": good + "\u00e9",
        "oversized": t.token(pad="x" * 5000),
        "just dots": "..",
        "empty": "",
        "spaces": "   ",
        "a word": "hello",
    }
    for name, token in wrong.items():
        add(f"token: {name}", _event("token", token, client_id=None))
    add("token: swapped via password", _event("mqtt_password", wrong["payload swapped"]))
    add("token: truncated via header", _event("http_header", wrong["truncated 21"]))
    # events
    for name, event in {
        "empty event": {}, "not a dict": "x", "None": None, "token number": {"token": 42},
        "no token anywhere": {"protocolData": {"mqtt": {"username": "phone", "clientId": "u1.7.app"}}},
        "password not base64": {"protocolData": {"mqtt": {"password": "not base64!"}}},
        "password not ASCII": {"protocolData": {"mqtt": {"password": base64.b64encode("é".encode()).decode()}}},
        "two headers": {"protocolData": {"http": {"headers": {"devshare-token": good, "Devshare-Token": "b"}}}},
        "two query tokens": {"protocolData": {"http": {"queryString": f"?devshare-token={good}&devshare-token=b"}}},
        # The same value twice is one token (docs/decisions/0006-a-repeated-token-parameter.md).
        "the same header twice": {"protocolData": {"http": {"headers": {"devshare-token": good,
                                                                        "Devshare-Token": good}}}},
        "the same query token twice": {"protocolData": {"http": {
            "queryString": f"?devshare-token={good}&devshare-token={good}"}}},
        "many headers": {"protocolData": {"http": {"headers": {f"h{i}": "x" for i in range(201)}}}},
        "empty password, token in username": {"protocolData": {"mqtt": {
            "password": "", "username": f"u?{KEY_NAME}={good}", "clientId": "u1.7.app"}}},
    }.items():
        if isinstance(event, dict) and "protocolData" in event:
            event["signatureVerified"] = True  # a JWT's, or nothing: the signed authorizer's events
        add(f"event: {name}", event)
    _compact_cases(private, t, add)
    return cases


def _compact_cases(private, t: Tokens, add) -> None:
    """Compact device tokens (docs/authorizer.md#compact-device-tokens): at
    the unsigned authorizer through every source, against every snapshot and
    key state the JWT cases meet, plus the format's own refusals."""

    def token(thing=LAMP, key="ca", signer=None, tenant=1, iat=NOW - 60, exp=NOW + 3600) -> str:
        claims = compact.CompactClaims(thing=thing, tenant=tenant, issued_at=iat, expires=exp)
        return compact.encode(claims, kid=_compact_kid(private, key), sign=private[signer or key].sign)

    def unsigned(where, text, client_id=LAMP, signed=False):
        return _event(where, text, client_id=client_id if where != "http_header" else None, signed=signed)

    for where in ("token", "mqtt_password", "mqtt_username", "http_header", "query_string"):
        add(f"compact lamp via {where}", unsigned(where, token()))
    add("compact lamp, tuned", unsigned("mqtt_password", token()), config="tuned")
    add("compact lamp, signatureVerified absent", unsigned("token", token(), signed=None))
    add("compact lamp, signatureVerified the string true", {**unsigned("token", token()), "signatureVerified": "true"})
    add("compact lamp at the signed authorizer", _event("token", token(), client_id=LAMP))
    add("device JWT at the unsigned authorizer", unsigned("token", t.token(sub=f"device:{LAMP}")))
    add("user JWT at the unsigned authorizer", unsigned("mqtt_username", t.token(), client_id="u1.7.app"))
    add("compact lamp as another client", unsigned("token", token(), client_id="d-lamp00000002"))
    add("compact lamp of tenant 2", unsigned("token", token(tenant=2)))
    add("compact moved device (cut-off after its token)", unsigned("token", token("d-moved00001"), client_id=None))
    add("compact moved device, token issued after the cut-off",
        unsigned("token", token("d-moved00001", iat=NOW - 5), client_id=None))
    add("compact device gone", unsigned("token", token(LOCK), client_id=None))
    add("compact device not in its snapshot", unsigned("token", token(OVEN), client_id=None))
    add("compact device without snapshot", unsigned("token", token("d-nope"), client_id=None))
    add("compact device with a window", unsigned("token", token("d-window0001"), client_id=None))
    add("compact device 128-char name", unsigned("token", token("x" * 128), client_id=None))
    # keys
    add("compact key b (staged) verifies", unsigned("token", token(key="cb")))
    add("compact stranger kid", unsigned("token", token(key="cstranger")))
    add("compact a's kid, stranger's signature", unsigned("token", _resigned(token(), private["cstranger"])))
    add("compact no key item", unsigned("token", token()), store="no_keys")
    add("compact broken key item", unsigned("token", token()), store="broken_keys")
    add("compact key item without compact halves", unsigned("token", token()), store="rsa_only")
    add("compact retired key a", unsigned("token", token()), store="rotated")
    add("compact active key b after rotation", unsigned("token", token(key="cb")), store="rotated")
    add("compact retiring key a", unsigned("token", token()), store="retiring")
    # times, as for JWTs
    for name, times in {
        "expired": dict(exp=NOW - 120), "expires now": dict(exp=NOW), "expires too soon": dict(exp=NOW + 299),
        "expires just in time": dict(exp=NOW + 300), "630 s left": dict(exp=NOW + 630),
        "expires in 2 days": dict(exp=NOW + 2 * 86400), "lifetime 31 days": dict(iat=NOW, exp=NOW + 31 * 86400),
        "lifetime over 31 days": dict(iat=NOW, exp=NOW + 31 * 86400 + 1), "iat in leeway": dict(iat=NOW + 30),
        "iat past leeway": dict(iat=NOW + 31), "iat future": dict(iat=NOW + 600),
    }.items():
        add(f"compact times: {name}", unsigned("token", token(**times)))
        if name.startswith("iat"):
            add(f"compact times: {name}, no leeway", unsigned("token", token(**times)), config="tuned")
    # the format
    good = token()
    for name, text in {
        "cut by one": good[:-1], "cut by two": good[:-2], "padded": good + "=", "re-spelled last character":
        good[:-1] + _bump(good[-1]), "standard alphabet": good.replace("-", "+").replace("_", "/") + "+/",
        "a space": good[:20] + " " + good[20:], "one character": "A", "201 characters": "A" * 201,
        "tagged 18": _cose(private, tag=18), "alg ES256": _cose(private, alg=-7), "extra claim":
        _cose(private, extra={7: b"jti"}), "sub not a thing name": _cose(private, thing="d-*"),
        "claims swapped under a valid signature": swap_claims(good, token(OVEN)),
    }.items():
        add(f"compact token: {name}", unsigned("token", text))


def _resigned(text: str, private) -> str:
    """The same protected header (so the same kid) and claims, signed by `private`."""
    parsed = compact.parse(text)
    raw = unb64url(text)
    return _b64url(raw[:-compact.SIGNATURE_BYTES] + private.sign(parsed.signed))


def _cose(private, *, tag=None, alg=compact.ALG_EDDSA, extra=None, thing=LAMP) -> str:
    """A COSE_Sign1 off the fixed layout in one way, signed by key ca, built
    with cbor2 rather than lambda_bridge.compact."""
    protected = cbor2.dumps({1: alg, 4: _compact_kid(private, "ca")})
    payload = cbor2.dumps({2: thing, 4: NOW + 3600, 6: NOW - 60, "tid": 1, **(extra or {})})
    signature = private["ca"].sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    message = [protected, {}, payload, signature]
    return _b64url(cbor2.dumps(cbor2.CBORTag(tag, message) if tag else message))




def _bump(character: str) -> str:
    """A base64url character with the same leading bits and other trailing ones."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return alphabet[alphabet.index(character) ^ 1]


def _noncanonical(make, part: int) -> str:
    """A good token whose `part` is changed in unused trailing bits only: it
    decodes to the same bytes, so only a strict parser refuses it."""
    for n in range(4):
        parts = make(n).split(".")
        if len(parts[part]) % 4 in (2, 3):
            parts[part] = parts[part][:-1] + _bump(parts[part][-1])
            return ".".join(parts)
    raise AssertionError("no length with unused bits")


def build() -> dict:
    private = _keys()
    stores = _stores(private)
    corpus = {"now": NOW, "stores": stores, "cases": []}
    for name, store, config, event in _cases(private):
        case = {"name": name, "store": store, "config": config, "now": NOW, "event": event}
        case["answer"] = answer(case, stores)
        corpus["cases"].append(case)
    names = [c["name"] for c in corpus["cases"]]
    assert len(names) == len(set(names)), "case names must be unique"
    return corpus


def main() -> int:
    corpus = build()
    corpus["stores"] = {name: {k: item_to_json(v) for k, v in store.items()}
                        for name, store in corpus["stores"].items()}
    CORPUS.write_text(json.dumps(corpus, indent=1, sort_keys=False) + "\n")
    reasons = {}
    for case in corpus["cases"]:
        reasons[case["answer"]["log"]["reason"]] = reasons.get(case["answer"]["log"]["reason"], 0) + 1
    print(f"{len(corpus['cases'])} cases → {CORPUS}", reasons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
