"""AWS IoT Core custom authorizer: the Lambda entry point.

`build(env)` makes what the handler needs (configuration, the DynamoDB client,
the key cache inside the Authorizer) from an environment mapping. Module
scope builds it once from `os.environ`, so a cold start pays for it once and
every invocation after reuses it; tests and `manage.py authorize` build their
own from a mapping instead of editing `os.environ`. Each invocation is one
decision and one JSON log line.
"""
from __future__ import annotations

import json
import os
import time
from typing import Mapping

from lambda_bridge import events
from lambda_bridge.authorizer import Authorizer, Decision
from lambda_bridge.config import Config, ConfigError
from lambda_bridge.store import DynamoStore
from lambda_bridge.vocabulary import Reason


def _log(record: dict) -> None:
    # One line per record: CloudWatch Logs Insights parses it as JSON.
    print(json.dumps(record, separators=(",", ":"), default=str), flush=True)


class Handler:
    """One started Lambda: its dependencies, or why it could not start."""

    def __init__(self, authorizer: Authorizer | None, config_error: str = ""):
        self.authorizer = authorizer
        self.config_error = config_error
        # The first invocation after a build is the cold start: it pays for
        # the TLS connection and the key item read the later ones reuse.
        self.cold = True

    @property
    def config(self) -> Config | None:
        return self.authorizer.config if self.authorizer else None

    def __call__(self, event, context) -> dict:
        started = time.perf_counter()
        cold, self.cold = self.cold, False
        if self.authorizer is None:
            decision = Decision(allowed=False, reason=Reason.MISCONFIGURED, detail=self.config_error)
        else:
            decision = self.authorizer.decide(event)
        _log({
            "event": "authorize",
            "request_id": getattr(context, "aws_request_id", None),
            "cold_start": cold,
            "connection": events.connection_id(event),
            "source": decision.source,
            "credential": decision.credential,
            "principal": decision.principal,
            "tenant": decision.tenant,
            "decision": "allow" if decision.allowed else "deny",
            "reason": decision.reason,
            "detail": decision.detail or None,
            "devices": decision.devices,
            "documents": len(decision.documents),
            "policy_chars": sum(map(len, decision.documents)),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        })
        return decision.response()


def build(env: Mapping[str, str]) -> Handler:
    """A handler from `env` alone. A bad setting is logged once here and every
    connection is refused until it is fixed; nothing here raises."""
    try:
        config = Config.from_env(env)
        return Handler(Authorizer(config, DynamoStore.from_config(config, credentials=_credentials(env))))
    except ConfigError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001  (e.g. botocore refusing the endpoint URL: still answer every call)
        error = f"{exc.__class__.__name__} at cold start"
    _log({"event": "config_error", "detail": error})
    return Handler(None, error)


def _credentials(env: Mapping[str, str]) -> dict[str, str | None]:
    """The keys in `env`, when it has them; otherwise boto3's own chain finds
    them. Only `env`'s session token goes with its keys: one left over
    elsewhere would not match them."""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": env.get("AWS_SESSION_TOKEN") or None}
    return {}


HANDLER = build(os.environ)


def lambda_handler(event, context):
    return HANDLER(event, context)
