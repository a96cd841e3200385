"""AWS IoT Core custom authorizer: the Lambda entry point.

Configuration is read and the DynamoDB client made once per cold start; each
invocation is one decision and one JSON log line.
"""
import json
import os
import time

from lambda_bridge import events
from lambda_bridge.authorizer import Authorizer, Decision
from lambda_bridge.config import Config, ConfigError
from lambda_bridge.store import DynamoStore
from lambda_bridge.vocabulary import Reason


def _log(record: dict) -> None:
    # One line per record: CloudWatch Logs Insights parses it as JSON.
    print(json.dumps(record, separators=(",", ":"), default=str), flush=True)


try:
    CONFIG = Config.from_env(os.environ)
    AUTHORIZER = Authorizer(CONFIG, DynamoStore.from_config(CONFIG))
    CONFIG_ERROR = ""
except ConfigError as exc:
    CONFIG, AUTHORIZER, CONFIG_ERROR = None, None, str(exc)
    _log({"event": "config_error", "detail": CONFIG_ERROR})
except Exception as exc:  # e.g. botocore refusing the endpoint URL: still answer every call
    CONFIG, AUTHORIZER, CONFIG_ERROR = None, None, f"{exc.__class__.__name__} at cold start"
    _log({"event": "config_error", "detail": CONFIG_ERROR})


def lambda_handler(event, context):
    started = time.perf_counter()
    if AUTHORIZER is None:
        decision = Decision(allowed=False, reason=Reason.MISCONFIGURED, detail=CONFIG_ERROR)
    else:
        decision = AUTHORIZER.decide(event)
    _log({
        "event": "authorize",
        "connection": events.connection_id(event),
        "source": decision.source,
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
