"""The authorizer run the way AWS runs it: environment variables, a handler
built from them as a cold start builds it, a DynamoDB table (moto, over HTTP) holding
the key item and snapshots, RS256 tokens and canned IoT events."""
import base64
import contextlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lambda_bridge import keys, snapshot

EVENTS = Path(__file__).parent / "events"
REGION, ACCOUNT = "eu-west-1", "123456789012"
ISSUER, AUDIENCE = "https://devshare.test", "devshare-iot"
KEY_NAME = "devshare-token"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, data: str) -> str:
        """What the gateway checks: base64(RSA-SHA256(token)), PKCS#1 v1.5."""
        raw = self.private.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    return {name: SigningKey(f"kid-{name}-{uuid.uuid4().hex[:8]}",
                             rsa.generate_private_key(public_exponent=65537, key_size=2048))
            for name in ("a", "b", "stranger")}


def assert_contract(response: dict) -> None:
    """What AWS IoT accepts back from an authorizer (docs/authorizer.md)."""
    assert set(response) == {"isAuthenticated", "principalId", "disconnectAfterInSeconds",
                             "refreshAfterInSeconds", "policyDocuments"}
    assert isinstance(response["isAuthenticated"], bool)
    assert re.fullmatch(r"[a-zA-Z0-9]{1,128}", response["principalId"])
    for ttl in ("disconnectAfterInSeconds", "refreshAfterInSeconds"):
        assert type(response[ttl]) is int and 300 <= response[ttl] <= 86_400
    documents = response["policyDocuments"]
    assert isinstance(documents, list) and len(documents) <= 10
    for document in documents:
        assert isinstance(document, str) and len(document) <= 2048
        parsed = json.loads(document)
        assert parsed["Version"] == "2012-10-17" and parsed["Statement"]
    if not response["isAuthenticated"]:
        assert documents == []


@dataclass(frozen=True)
class Context:
    """The part of the Lambda context object the handler reads."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Lambda:
    """One cold-started handler against one table, plus the means to feed it."""

    def __init__(self, handler, table, signing_keys, capsys):
        self.handler = handler
        self.table = table
        self.keys = signing_keys
        self.capsys = capsys
        self.logs: list[dict] = []
        self.minted: list[str] = []

    # --- the table ------------------------------------------------------------

    def put_item(self, item: dict) -> None:
        from authz.snapshots import store

        store.client().put_item(TableName=self.table.name, Item=item)

    def put_keyring(self, *, a: str | None = keys.ACTIVE, b: str | None = None, version: int = 1) -> None:
        slots = {}
        for name, state in (("A", a), ("B", b)):
            if state:
                key = self.keys[name.lower()]
                slots[name] = keys.KeySlot(kid=key.kid, pem=key.public_pem, state=state)
        active = next((name for name, slot in slots.items() if slot.state == keys.ACTIVE), None)
        self.put_item(keys.to_item(keys.Keyring(version=version, slots=slots, active=active)))

    def put_snapshot(self, *, kind=snapshot.USER, tenant=1, principal="7", entries=(), gone=False) -> None:
        snap = snapshot.Snapshot(kind=kind, tenant=tenant, principal=principal, version=time.time_ns(),
                                 generated_at=int(time.time()), entries=tuple(entries), gone=gone)
        self.put_item(snapshot.to_item(snap))

    # --- tokens and events ----------------------------------------------------

    def token(self, *, key="a", sub="user:7", tid=1, cid=None, lifetime=3600, headers=None,
              algorithm="RS256", signing_key=None, **claims) -> str:
        """A platform token; by default for user 7 of tenant 1 as client `u1.7.app`
        (a device's client id is its thing name)."""
        now = int(time.time())
        if cid is None:
            kind, _, principal = sub.partition(":")
            cid = principal if kind == "device" else f"u{tid}.{principal}.app"
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tid": tid, "cid": cid,
                   "iat": now, "nbf": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        if signing_key is None:
            signing_key = self.keys[key].private
        header = {"kid": self.keys[key].kid, **(headers or {})}
        token = jwt.encode(payload, signing_key, algorithm=algorithm, headers=header)
        self.minted.append(token)
        return token

    def event(self, name: str, token: str, *, client_id: str = "u1.7.app", key: str = "a") -> dict:
        """A canned event from tests/lambda_bridge/events/, filled in."""
        text = (EVENTS / f"{name}.json").read_text()
        values = {
            "token": token,
            "token_base64": base64.b64encode(token.encode()).decode(),
            "token_urlencoded": quote(token, safe=""),
            "signature_urlencoded": quote(self.keys[key].sign(token), safe=""),
            "signature": self.keys[key].sign(token),
            "client_id": client_id,
            "key_name": KEY_NAME,
        }
        return json.loads(re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text))

    # --- invoking -------------------------------------------------------------

    def invoke(self, event) -> dict:
        """The handler's answer, which must always honour the contract and
        log exactly one JSON line that never holds the token."""
        self.capsys.readouterr()
        response = self.handler(event, Context())
        assert_contract(response)
        lines = [line for line in self.capsys.readouterr().out.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        record = json.loads(lines[0])
        for secret in _signatures(event) + [t.rsplit(".", 1)[-1] for t in self.minted]:
            # The signature is what makes a token usable; the header is public.
            assert secret not in lines[0]
        self.logs.append(record)
        return response

    @property
    def last_log(self) -> dict:
        return self.logs[-1]


def _signatures(value) -> list[str]:
    """The signature part of every token-like string in an event, in each
    form a token travels in (as is, URL-encoded, base64 in a password)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _signatures(v)]
    if isinstance(value, list):
        return [s for v in value for s in _signatures(v)]
    if not isinstance(value, str):
        return []
    forms = {value, unquote(value)}
    with contextlib.suppress(ValueError):
        forms.add(base64.b64decode(value, validate=True).decode())
    found = []
    for form in forms:
        for candidate in re.split(r"[\s&=?]", form):
            last = candidate.rsplit(".", 1)[-1]
            if candidate.count(".") == 2 and len(last) >= 16:
                found.append(last)
    return found


def lambda_env(table_name: str, endpoint: str, **overrides) -> dict[str, str]:
    from django.conf import settings

    env = {
        # The table lives where Django's writer put it; the IoT endpoint is
        # elsewhere, so the policy ARNs prove they use DEVSHARE_IOT_REGION.
        "AWS_REGION": settings.AWS_REGION,
        "DEVSHARE_IOT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DEVSHARE_TABLE": table_name,
        "DEVSHARE_DYNAMODB_ENDPOINT_URL": endpoint,
        "DEVSHARE_TOKEN_ISSUER": ISSUER,
        "DEVSHARE_TOKEN_AUDIENCE": AUDIENCE,
        "DEVSHARE_TOKEN_KEY_NAME": KEY_NAME,
        "DEVSHARE_AWS_ACCOUNT_ID": ACCOUNT,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def cold_start(table, dynamodb_endpoint, signing_keys, capsys):
    """cold_start(**env overrides) → a handler built as AWS would start it, from
    exactly that environment."""
    from lambda_bridge.handler import build

    def start(**overrides) -> Lambda:
        return Lambda(build(lambda_env(table.name, dynamodb_endpoint, **overrides)), table, signing_keys, capsys)

    return start


@pytest.fixture
def lam(cold_start) -> Lambda:
    """A started handler with slot A active."""
    started = cold_start()
    started.put_keyring()
    return started
