"""The one door to AWS IoT: the control plane (`iot`) for the authorizer's
keys, the data plane (`iot-data`) for live connections.

moto implements neither the authorizer APIs nor iot-data's connection
APIs, so every such call goes through this class and its tests drive it with
botocore's Stubber, which checks each request against AWS's own API model,
and against the running local_iot (docs/local-iot.md#the-broker).
"""
import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

# A missing connection is an answer, not a failure (docs/deploy.md#8-the-data-plane).
NOT_FOUND = "ResourceNotFoundException"
MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class LiveConnection:
    """iot-data GetConnection's answer, the fields the platform shows."""

    client_id: str
    connected: bool
    connected_since: datetime | None = None
    disconnected_at: datetime | None = None
    disconnect_reason: str = ""
    clean_session: bool | None = None
    keep_alive: int | None = None


class IotError(RuntimeError):
    """An AWS IoT call failed; the message is one line, fit for an operator."""


class IotGateway:
    def __init__(self, client, data_client=None):
        self.client = client
        self.data_client = data_client

    @classmethod
    def from_settings(cls) -> "IotGateway":
        return cls(_control_client(), _data_client())

    def update_authorizer_keys(self, authorizer_name: str, public_keys: dict[str, str]) -> None:
        """Replace the authorizer's whole `tokenSigningPublicKeys` map with
        `public_keys` (slot name → PEM): a key left out stops verifying at the
        gateway. Setting the same map twice is harmless, which the rotation's
        re-publishing relies on."""
        if not public_keys:
            # A signing authorizer with no key would refuse every connection.
            raise IotError("refusing to leave the authorizer without a signing key")
        try:
            self.client.update_authorizer(authorizerName=authorizer_name, tokenSigningPublicKeys=public_keys)
        except (ClientError, BotoCoreError) as exc:
            raise _failure("UpdateAuthorizer", authorizer_name, exc) from None

    # --- the data plane (iot-data): live connections, docs/deploy.md#8-the-data-plane ---

    def delete_connection(self, client_id: str, *, clean_session: bool = True, prevent_will: bool = True) -> bool:
        """Close `client_id`'s connection: True when one was closed, False when
        AWS IoT knows no such connection (ResourceNotFoundException). Raises
        IotError for anything else, so that the caller retries."""
        answer = self._ask("DeleteConnection", self._data_plane().delete_connection, client_id,
                           cleanSession=clean_session, preventWillMessage=prevent_will)
        return answer is not None

    def get_connection(self, client_id: str) -> LiveConnection | None:
        """What AWS IoT knows about `client_id`'s connection, or None. AWS
        keeps a disconnected client's record for 30 minutes: then `connected`
        is False and the disconnect's time and reason are set."""
        # No includeSocketInformation: the platform shows no addresses.
        answer = self._ask("GetConnection", self._data_plane().get_connection, client_id)
        return None if answer is None else _live_connection(client_id, answer)

    @staticmethod
    def _ask(operation: str, call, client_id: str, **params) -> dict | None:
        """iot-data's answer about `client_id`, or None when AWS IoT knows no
        such connection; any other failure is an IotError."""
        try:
            return call(clientId=client_id, **params)
        except ClientError as exc:
            if _code(exc) == NOT_FOUND:
                return None
            raise _failure(operation, client_id, exc) from None
        except BotoCoreError as exc:
            raise _failure(operation, client_id, exc) from None

    def _data_plane(self):
        if self.data_client is None:
            raise IotError("IOT_DATA_ENDPOINT_URL is not set")
        return self.data_client


@functools.cache
def gateway() -> IotGateway:
    """One gateway per process (boto3 clients are thread-safe)."""
    return IotGateway.from_settings()


# --- clients --------------------------------------------------------------------------


def _control_client():
    return boto3.client(
        "iot",
        region_name=settings.AWS_REGION,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10),
    )


def _data_client():
    """The iot-data client, or None when no data endpoint is configured.
    Short timeouts and a single retry: its callers (the session-cut outbox)
    retry with backoff themselves, and a revocation should not sit for
    tens of seconds inside botocore (docs/deploy.md#8-the-data-plane)."""
    if not settings.IOT_DATA_ENDPOINT_URL:
        return None
    return boto3.client(
        "iot-data",
        endpoint_url=settings.IOT_DATA_ENDPOINT_URL,
        region_name=settings.IOT_REGION,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5),
    )


# --- answers and failures -------------------------------------------------------------


def _live_connection(client_id: str, answer: dict) -> LiveConnection:
    return LiveConnection(
        client_id=answer.get("clientId") or client_id,
        connected=bool(answer.get("connected")),
        connected_since=_from_epoch_ms(answer.get("connectedSince")),
        disconnected_at=_from_epoch_ms(answer.get("disconnectedSince")),
        disconnect_reason=answer.get("disconnectReason", ""),
        clean_session=answer.get("cleanSession"),
        keep_alive=answer.get("keepAliveDuration"),
    )


def _from_epoch_ms(value: int | None) -> datetime | None:
    """GetConnection's times are epoch milliseconds, which botocore passes
    through as int (the model's `long`), not as datetime."""
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _failure(operation: str, subject: str, exc: Exception) -> IotError:
    """One line of at most 300 characters naming the operation, its subject
    and AWS's error code (or botocore's exception class) and message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        code, message = error.get("Code") or f"HTTP {status}", error.get("Message", "")
    else:
        code, message = exc.__class__.__name__, str(exc)
    line = " ".join(f"{operation} {subject}: {code}: {message}".split())
    return IotError(line[:MESSAGE_LIMIT])
