"""Where the token is in the event AWS IoT sends (docs/authorizer.md).

The event is untrusted input: every field may be missing, of the wrong type or
huge. Anything odd is a refusal with a reason, never an exception.
"""
from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qs

from lambda_bridge.refusal import Refused
from lambda_bridge.vocabulary import Reason

MAX_TOKEN = 4096      # a platform JWT is well under 2 KB, a scoped one under 4 KB
MAX_FIELD = 8192      # username, password, query string, one header value
MAX_QUERY_FIELDS = 32
MAX_HEADERS = 200


def find_token(event, key_name: str) -> tuple[str, str]:
    """(token, where it came from). Sources in order: the token AWS extracted
    (and, for a signed authorizer, verified the signature of); the MQTT
    password; the MQTT username's query parameters; an HTTP header; the
    WebSocket URL's query string, which is the only way a browser has."""
    if not isinstance(event, dict):
        raise Refused(Reason.BAD_EVENT, "event is not an object")
    # Empty fields count as absent: a client may send an empty password and
    # its token in the username.
    token = event.get("token")
    if token not in (None, ""):
        return _checked(token), "token"
    data = _dict(event.get("protocolData"))
    mqtt = _dict(data.get("mqtt"))
    http = _dict(data.get("http"))
    if mqtt.get("password") not in (None, ""):
        return _checked(_password(mqtt["password"])), "mqtt_password"
    username = mqtt.get("username")
    if isinstance(username, str) and "?" in username:
        found = _query_value(username.split("?", 1)[1], key_name)
        if found is not None:
            return _checked(found), "mqtt_username"
    header = _header(http.get("headers"), key_name)
    if header not in (None, ""):
        return _checked(header), "http_header"
    query = http.get("queryString")
    if isinstance(query, str):
        found = _query_value(query.removeprefix("?"), key_name)
        if found is not None:
            return _checked(found), "query_string"
    raise Refused(Reason.NO_TOKEN)


def signature_verified(event) -> bool:
    """Whether the signed authorizer invoked us: AWS sets `signatureVerified`
    true only after checking the token's signature, which only an authorizer
    with signing on does. Anything but a JSON true is the unsigned one."""
    return isinstance(event, dict) and event.get("signatureVerified") is True


def mqtt_client_id(event) -> str | None:
    """The client id an MQTT client asked for, when AWS passed it along."""
    if not isinstance(event, dict):
        return None
    value = _dict(_dict(event.get("protocolData")).get("mqtt")).get("clientId")
    return value if isinstance(value, str) else None


def connection_id(event) -> str | None:
    value = _dict(event.get("connectionMetadata")).get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) and len(value) <= 64 and value.isprintable() else None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _checked(token) -> str:
    if not isinstance(token, str) or not token or not token.isascii():
        raise Refused(Reason.MALFORMED_TOKEN, "token is not a non-empty ASCII string")
    if len(token) > MAX_TOKEN:
        raise Refused(Reason.TOKEN_TOO_LARGE, f"{len(token)} characters")
    return token


def _password(value) -> str:
    # AWS hands the MQTT password over base64-encoded.
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise Refused(Reason.BAD_PASSWORD, "password is not a string of sensible size")
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise Refused(Reason.BAD_PASSWORD, "password is not base64 of an ASCII token") from None


def _query_value(query: str, key_name: str) -> str | None:
    if len(query) > MAX_FIELD:
        raise Refused(Reason.BAD_EVENT, "query string too long")
    try:
        values = parse_qs(query, max_num_fields=MAX_QUERY_FIELDS).get(key_name)
    except ValueError:
        raise Refused(Reason.BAD_EVENT, "too many query parameters") from None
    return _one(values, "token parameter")


def _header(headers, key_name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    if len(headers) > MAX_HEADERS:
        raise Refused(Reason.BAD_EVENT, "too many headers")
    wanted = key_name.lower()
    return _one([v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted], "token header")


def _one(values: list | None, what: str):
    """The one value of a parameter, or None. The same value repeated is that
    value: an AWS SDK handed `mqttUsername` and the four custom-authorizer
    fields too sends the token twice, and there is nothing to choose between.
    Two different values are refused: refusing beats guessing which one the
    gateway verified (docs/decisions/0006-a-repeated-token-parameter.md)."""
    if not values:
        return None
    if any(value != values[0] for value in values[1:]):
        raise Refused(Reason.BAD_EVENT, f"{what} given more than once, with different values")
    return values[0]
