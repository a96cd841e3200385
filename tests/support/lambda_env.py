"""The authorizer's side of the platform as a test sets it up: its
environment, the token identity it checks, its signing keys and the Lambda
context object."""
import base64
import uuid
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.paths import ROOT

EVENTS = ROOT / "tests" / "lambda_bridge" / "events"  # canned IoT events, {{placeholders}} filled in by Lambda.event
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


@dataclass(frozen=True)
class Context:
    """The part of the Lambda context object the handler reads."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


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


