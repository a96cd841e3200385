"""The authorizer's settings, read once from the environment at cold start.

A bad setting is a deployment mistake, not a per-connection one: it is found
once, logged once, and every connection is refused until it is fixed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from lambda_bridge import vocabulary

# AWS allows 300..86,400 for both TTLs (docs/authorizer.md).
MIN_TTL = 300
MAX_TTL = 86_400
# The key item is cached at most this long (DEVSHARE_KEY_CACHE_SECONDS):
# Django keeps a new key published longer than this before it signs
# (authz/checks.py, docs/signing-keys.md#the-compact-half).
MAX_KEY_CACHE_SECONDS = 60
# How late a gateway may call back at a refresh and still find the token
# usable (docs/decisions/0007-exact-ends.md).
REFRESH_SLACK = 30


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    table: str
    issuer: str
    audience: str
    account: str
    region: str  # of the IoT endpoint, for policy ARNs
    table_region: str  # where the Lambda and its table run
    token_key_name: str = "devshare-token"  # noqa: S105  (a header name, not a secret)
    endpoint_url: str | None = None
    # Policies are cached by the gateway for this long at most (or until the
    # token's expiry in its last 630 s), so, should the platform's disconnect
    # fail, it bounds how long a revoked share keeps working on an open MQTT
    # connection (docs/decisions/0007-exact-ends.md).
    refresh_seconds: int = MIN_TTL
    disconnect_seconds: int = MAX_TTL
    leeway_seconds: int = 30
    key_cache_seconds: int = MAX_KEY_CACHE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{name} is not set")
            return value

        def number(name: str, default: int, low: int, high: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not re.fullmatch(r"[0-9]{1,6}", raw) or not low <= int(raw) <= high:
                raise ConfigError(f"{name} must be a whole number of seconds in {low}..{high}, not {raw!r}")
            return int(raw)

        account = required("DEVSHARE_AWS_ACCOUNT_ID")
        if not re.fullmatch(r"[0-9]{12}", account):
            raise ConfigError("DEVSHARE_AWS_ACCOUNT_ID must be the 12-digit AWS account id")
        table_region = required("AWS_REGION")
        region = env.get("DEVSHARE_IOT_REGION", "").strip() or table_region
        for value in (region, table_region):
            if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", value):
                raise ConfigError(f"{value!r} is not an AWS region name")
        key_name = env.get("DEVSHARE_TOKEN_KEY_NAME", "").strip() or cls.token_key_name
        if not re.fullmatch(vocabulary.TOKEN_KEY_NAME, key_name):
            raise ConfigError("DEVSHARE_TOKEN_KEY_NAME must be 1-128 letters, digits, '_' or '-'")
        return cls(
            table=required("DEVSHARE_TABLE"),
            issuer=required("DEVSHARE_TOKEN_ISSUER"),
            audience=required("DEVSHARE_TOKEN_AUDIENCE"),
            account=account,
            region=region,
            table_region=table_region,
            token_key_name=key_name,
            endpoint_url=env.get("DEVSHARE_DYNAMODB_ENDPOINT_URL", "").strip() or None,
            refresh_seconds=number("DEVSHARE_REFRESH_SECONDS", MIN_TTL, MIN_TTL, MAX_TTL),
            disconnect_seconds=number("DEVSHARE_DISCONNECT_SECONDS", MAX_TTL, MIN_TTL, MAX_TTL),
            leeway_seconds=number("DEVSHARE_LEEWAY_SECONDS", 30, 0, 300),
            key_cache_seconds=number("DEVSHARE_KEY_CACHE_SECONDS", MAX_KEY_CACHE_SECONDS, 1, MAX_KEY_CACHE_SECONDS),
        )
