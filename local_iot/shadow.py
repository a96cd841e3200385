"""The Device Shadow service, classic and named (docs/local-iot.md#device-shadows).

Pure and synchronous: the broker hands it a client's publish to a shadow
request topic and publishes what it answers; the data plane calls get,
update and delete for the REST API. Timestamps come from an injectable
clock, in whole epoch seconds as AWS writes them.

What AWS documents, and where (docs/local-iot.md#device-shadows lists what
is assumed beyond it):
- documents, delta, versions, client tokens, null and arrays:
  https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-document.html
- topics and when each answer is published:
  https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-mqtt.html
- error codes and messages:
  https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html
- a deleted shadow's version carries on; the 8 KB state limit:
  https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-data-flow.html
  https://docs.aws.amazon.com/iot/latest/developerguide/diagnosing-shadows.html
"""
from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable

# Only desired and reported count, metadata does not (diagnosing-shadows.html).
MAX_STATE_BYTES = 8 * 1024
MAX_DEPTH = 6
MAX_CLIENT_TOKEN_BYTES = 64
# Shadows held per thing, classic and named, deleted ones (kept for their
# version) included. AWS documents no such number that we could find: the
# bound keeps one client from growing memory without end (assumed).
MAX_SHADOWS_PER_THING = 100
# The iot-data service model's patterns and lengths for thingName and shadowName.
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
SHADOW_NAME = re.compile(r"[$a-zA-Z0-9:_-]{1,64}")

_OPERATIONS = ("get", "update", "delete")


class ShadowError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def topic_prefix(thing: str, name: str | None) -> str:
    """ShadowTopicPrefix: the classic shadow's, or a named shadow's."""
    base = f"$aws/things/{thing}/shadow"
    return base if name is None else f"{base}/name/{name}"


def parse_request_topic(topic: str) -> tuple[str, str | None, str] | None:
    """(thing, shadow name or None, operation) for a request topic, else None:
    answers such as .../get/accepted are the service's own, not requests."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[:2] != ["$aws", "things"] or parts[3] != "shadow":
        return None
    if len(parts) == 5 and parts[4] in _OPERATIONS:
        return parts[2], None, parts[4]
    if len(parts) == 7 and parts[4] == "name" and parts[6] in _OPERATIONS:
        return parts[2], parts[5], parts[6]
    return None


def parse_payload(payload: bytes) -> object:
    """A request body as JSON, refused as AWS refuses it."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ShadowError(415, "Unsupported documented encoding; supported encoding is UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack; AWS allows
        # six levels anyway, so it is just invalid JSON here.
        raise ShadowError(400, "Invalid JSON") from None


def encode(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class _Shadow:
    """One shadow. A deleted one stays as a tombstone so that its version
    carries on when it is created again."""

    state: dict = field(default_factory=dict)  # "desired" and/or "reported", never empty sections
    metadata: dict = field(default_factory=dict)  # the same shape, {"timestamp": t} per leaf
    version: int = 0
    exists: bool = False


class Shadows:
    def __init__(self, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._shadows: dict[tuple[str, str | None], _Shadow] = {}

    # --- MQTT ---------------------------------------------------------------------------

    def on_publish(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """A client's publish to a shadow request topic
        ($aws/things/{thing}/shadow[/name/{name}]/get|update|delete): the
        messages the service publishes in answer (accepted/rejected, delta,
        documents). [] for any other topic."""
        request = parse_request_topic(topic)
        if request is None:
            return []
        thing, name, operation = request
        prefix = f"{topic_prefix(thing, name)}/{operation}"
        token = None
        try:
            body = self._request_body(payload, operation)
            token = _client_token(body)
            if operation == "get":
                document = self.get(thing, name)
                return [(f"{prefix}/accepted", encode(_with_token(document, token)))]
            if operation == "delete":
                return self.delete(thing, name, client_token=token)[1]
            return self.update(thing, name, body)[1]
        except ShadowError as error:
            rejected = {"code": error.code, "message": error.message, "timestamp": self.now()}
            return [(f"{prefix}/rejected", encode(_with_token(rejected, token)))]

    @staticmethod
    def _request_body(payload: bytes, operation: str) -> object:
        # /get and /delete take an empty message; SDKs send {"clientToken": ...}
        # and expect it back. The delete topic ignores its content otherwise.
        if operation != "update" and not payload.strip():
            return {}
        try:
            return parse_payload(payload)
        except ShadowError:
            if operation == "delete":
                return {}
            raise

    # --- the operations -----------------------------------------------------------------

    def get(self, thing: str, name: str | None) -> dict:
        shadow = self._existing(thing, name)
        document: dict = {"state": copy.deepcopy(shadow.state), "metadata": copy.deepcopy(shadow.metadata)}
        delta, _ = _delta(shadow.state.get("desired", {}), shadow.state.get("reported", {}),
                          shadow.metadata.get("desired", {}))
        if delta:
            document["state"]["delta"] = delta
        document.update(version=shadow.version, timestamp=self.now())
        return document

    def update(self, thing: str, name: str | None, document: dict) -> tuple[dict, list[tuple[str, bytes]]]:
        """(the accepted document, the messages to publish as a result)."""
        _check_names(thing, name)
        request = _validated_update(document)
        token = request.get("clientToken")
        # Stored only once the update is accepted: a refused one leaves nothing behind.
        shadow = self._shadows.get((thing, name)) or _Shadow()
        if "version" in request and request["version"] != shadow.version:
            raise ShadowError(409, "Version conflict")
        now = self.now()
        state, metadata = copy.deepcopy(shadow.state), copy.deepcopy(shadow.metadata)
        for section, patch in request["state"].items():
            if patch is None:
                state.pop(section, None)
                metadata.pop(section, None)
                continue
            _merge(state.setdefault(section, {}), patch, metadata.setdefault(section, {}), now)
            if not state[section]:
                del state[section], metadata[section]
        if len(encode(state)) > MAX_STATE_BYTES:
            raise ShadowError(413, "The payload exceeds the maximum size allowed")

        if (thing, name) not in self._shadows:
            self._make_room(thing)
            self._shadows[(thing, name)] = shadow
        previous = _snapshot(shadow) if shadow.exists else None
        shadow.state, shadow.metadata = state, metadata
        shadow.version += 1
        shadow.exists = True

        accepted = {"state": copy.deepcopy(request["state"]),
                    "metadata": {section: _stamp(patch, now) for section, patch in request["state"].items()},
                    "version": shadow.version, "timestamp": now}
        prefix = topic_prefix(thing, name)
        messages = [(f"{prefix}/update/accepted", encode(_with_token(accepted, token)))]
        delta, delta_metadata = _delta(state.get("desired", {}), state.get("reported", {}),
                                       metadata.get("desired", {}))
        # Published when the request set desired state that the device has not
        # reported (device-shadow-mqtt.html#update-delta-pub-sub-topic).
        if delta and isinstance(request["state"].get("desired"), dict):
            delta_document = {"version": shadow.version, "timestamp": now,
                              "state": delta, "metadata": delta_metadata}
            messages.append((f"{prefix}/update/delta", encode(_with_token(delta_document, token))))
        documents = {"previous": previous, "current": _snapshot(shadow), "timestamp": now}
        messages.append((f"{prefix}/update/documents", encode(_with_token(documents, token))))
        return _with_token(accepted, token), messages

    def delete(self, thing: str, name: str | None, *,
               client_token: str | None = None) -> tuple[dict, list[tuple[str, bytes]]]:
        """(the delete/accepted document, the messages to publish). The
        version is kept: a shadow created again carries on from it."""
        shadow = self._existing(thing, name)
        shadow.state, shadow.metadata, shadow.exists = {}, {}, False
        document = _with_token({"version": shadow.version, "timestamp": self.now()}, client_token)
        return document, [(f"{topic_prefix(thing, name)}/delete/accepted", encode(document))]

    def names(self, thing: str) -> list[str]:
        """The thing's named shadows, sorted (ListNamedShadowsForThing); the
        classic shadow is not among them."""
        _check_names(thing, None)
        return sorted(name for (owner, name), shadow in self._shadows.items()
                      if owner == thing and name is not None and shadow.exists)

    # --- helpers ------------------------------------------------------------------------

    def _make_room(self, thing: str) -> None:
        """Room for one more shadow of this thing: the oldest deleted one is
        forgotten (its version then starts again, as AWS's does after 48
        hours), and with none deleted the update is refused (assumed)."""
        held = [key for key in self._shadows if key[0] == thing]
        if len(held) < MAX_SHADOWS_PER_THING:
            return
        deleted = [key for key in held if not self._shadows[key].exists]
        if not deleted:
            raise ShadowError(400, f"A thing may have at most {MAX_SHADOWS_PER_THING} shadows")
        del self._shadows[deleted[0]]

    def _existing(self, thing: str, name: str | None) -> _Shadow:
        _check_names(thing, name)
        shadow = self._shadows.get((thing, name))
        if shadow is None or not shadow.exists:
            # AWS names the shadow as thing~name for a named shadow (assumed).
            shown = thing if name is None else f"{thing}~{name}"
            raise ShadowError(404, f"No shadow exists with name: '{shown}'")
        return shadow

    def now(self) -> int:
        """The service's clock, in the whole epoch seconds its documents carry."""
        return int(self._clock())


def _check_names(thing: str, name: str | None) -> None:
    if not THING_NAME.fullmatch(thing):
        raise ShadowError(400, "Invalid thing name")
    if name is not None and not SHADOW_NAME.fullmatch(name):
        raise ShadowError(400, "Invalid shadow name")


def _client_token(body: object) -> str | None:
    """The request's clientToken when it is one AWS would echo."""
    if isinstance(body, dict):
        token = body.get("clientToken")
        if isinstance(token, str) and len(token.encode()) <= MAX_CLIENT_TOKEN_BYTES:
            return token
    return None


def _with_token(document: dict, token: str | None) -> dict:
    return document if token is None else {**document, "clientToken": token}


def _validated_update(document: object) -> dict:
    """The request state document, or the 400 AWS answers. Only state,
    clientToken and version matter; other top-level keys are ignored."""
    if not isinstance(document, dict):
        raise ShadowError(400, "Invalid JSON")
    if "clientToken" in document and _client_token(document) is None:
        raise ShadowError(400, "Invalid clientToken")
    version = document.get("version")
    if "version" in document and (type(version) is not int or version < 0):
        raise ShadowError(400, "Invalid version")
    if "state" not in document:
        raise ShadowError(400, "Missing required node: state")
    state = document["state"]
    if not isinstance(state, dict):
        raise ShadowError(400, "State node must be an object")
    for section, value in state.items():
        if section not in ("desired", "reported"):
            raise ShadowError(400, "State contains an invalid node")
        if value is not None and not isinstance(value, dict):
            raise ShadowError(400, f"{section.capitalize()} node must be an object")
        if value is not None and _deeper_than(value, MAX_DEPTH):
            raise ShadowError(400, f"JSON contains too many levels of nesting; maximum is {MAX_DEPTH}")
        if _has_null_in_array(value):
            raise ShadowError(400, "State contains an invalid node")
    return document


def _deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels, the section
    itself being the first. Stops at the limit, so a deep document costs
    no deeper a stack than a valid one."""
    if not isinstance(value, (dict, list)):
        return False
    if limit == 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(child, limit - 1) for child in children)


def _has_null_in_array(value: object, in_array: bool = False) -> bool:
    if value is None:
        return in_array
    if isinstance(value, dict):
        return any(_has_null_in_array(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null_in_array(v, True) for v in value)
    return False


def _merge(target: dict, patch: dict, metadata: dict, now: int) -> None:
    """Apply one section of an update in place: null removes a key, objects
    merge key by key, anything else (arrays included) replaces. An object
    left empty is removed."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            metadata.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            if not isinstance(metadata.get(key), dict):
                metadata[key] = {}
            _merge(target[key], value, metadata[key], now)
            if not target[key]:
                del target[key], metadata[key]
        else:
            target[key] = copy.deepcopy(value)
            metadata[key] = _stamp(value, now)


def _stamp(value: object, now: int) -> object:
    """Metadata for a value: its shape, with {"timestamp": now} at each leaf
    and one entry per array element."""
    if isinstance(value, dict):
        return {key: _stamp(v, now) for key, v in value.items()}
    if isinstance(value, list):
        return [_stamp(v, now) for v in value]
    return {"timestamp": now}


def _delta(desired: dict, reported: dict, metadata: dict) -> tuple[dict, dict]:
    """The desired keys whose value differs from the reported one, with the
    desired metadata of each; nested objects down to the differing leaves."""
    delta, delta_metadata = {}, {}
    for key, want in desired.items():
        if key not in reported:
            delta[key], delta_metadata[key] = copy.deepcopy(want), copy.deepcopy(metadata.get(key))
        elif isinstance(want, dict) and isinstance(reported[key], dict):
            inner, inner_metadata = _delta(want, reported[key], metadata.get(key) or {})
            if inner:
                delta[key], delta_metadata[key] = inner, inner_metadata
        elif not _same(want, reported[key]):
            delta[key], delta_metadata[key] = copy.deepcopy(want), copy.deepcopy(metadata.get(key))
    return delta, delta_metadata


def _same(a: object, b: object) -> bool:
    """JSON equality: true is not 1, as it would be in Python."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _snapshot(shadow: _Shadow) -> dict:
    return {"state": copy.deepcopy(shadow.state), "metadata": copy.deepcopy(shadow.metadata),
            "version": shadow.version}
