"""The one door to the AWS IoT control plane.

moto implements neither the authorizer APIs nor iot-data's DeleteConnection,
so every such call goes through this class and its tests drive it with
botocore's Stubber, which checks each request against AWS's own API model.
"""
import functools
from dataclasses import dataclass
from datetime import datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings


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
    def __init__(self, client):
        self.client = client

    @classmethod
    def from_settings(cls) -> "IotGateway":
        return cls(boto3.client(
            "iot",
            region_name=settings.AWS_REGION,
            aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
            aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10),
        ))

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
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise IotError(f"UpdateAuthorizer {authorizer_name}: {error.get('Code', '?')}: "
                           f"{error.get('Message', '')}"[:300]) from None
        except BotoCoreError as exc:
            raise IotError(f"UpdateAuthorizer {authorizer_name}: {exc.__class__.__name__}: {exc}"[:300]) from None

    # --- the data plane (iot-data): live connections, docs/live-access.md ---------

    def delete_connection(self, client_id: str, *, clean_session: bool = True, prevent_will: bool = True) -> bool:
        """Close `client_id`'s connection: True when one was closed, False when
        AWS IoT knows no such connection (ResourceNotFoundException). Raises
        IotError for anything else, so that the caller retries."""
        raise NotImplementedError

    def get_connection(self, client_id: str) -> LiveConnection | None:
        """What AWS IoT knows about `client_id`'s connection, or None."""
        raise NotImplementedError


@functools.cache
def gateway() -> IotGateway:
    """One gateway per process (boto3 clients are thread-safe)."""
    return IotGateway.from_settings()
