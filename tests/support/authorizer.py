"""A cold-started authorizer handler against one table, and what AWS IoT
requires of its every answer."""
import base64
import contextlib
import json
import re
import time
import uuid
from urllib.parse import quote, unquote

import jwt

from lambda_bridge import keys, snapshot
from tests.support.lambda_env import AUDIENCE, EVENTS, ISSUER, KEY_NAME, Context


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

    def put_snapshot(self, *, kind=snapshot.USER, tenant=1, principal="7", entries=(), gone=False, cutoff=None,
                     fmt=snapshot.FORMAT) -> None:
        snap = snapshot.Snapshot(kind=kind, tenant=tenant, principal=principal, version=time.time_ns(),
                                 generated_at=int(time.time()), entries=tuple(entries), gone=gone, cutoff=cutoff)
        self.put_item(snapshot.to_item(snap, fmt=fmt))

    # --- tokens and events ----------------------------------------------------

    def token(self, *, key="a", sub="user:7", tid=1, cid=None, lifetime=3600, headers=None,
              algorithm="RS256", signing_key=None, **claims) -> str:
        """A platform token; by default for user 7 of tenant 1 as client `u1.7.app`
        (a device's client id is its thing name). `iat=` (a claim like any
        other) says when it was issued, as the snapshot's cut-off judges it."""
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
            # As awsiotsdk's builders encode it: urllib.parse.quote, which leaves `/` as it is.
            "signature_sdk_quoted": quote(self.keys[key].sign(token)),
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


