"""A gateway for broker tests (docs/local-iot.md#the-broker): it answers a
CONNECT's password with Grants built from real AWS IoT policy documents,
judged by lambda_bridge.evaluator like any other grant, instead of
invoking the authorizer Lambda. The real gateway, which plays the custom
authorizer contract, has tests of its own."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from local_iot.gateway import Grant, Presented, Refused

REGION, ACCOUNT = "eu-west-1", "123456789012"

_TYPES = {"iot:Connect": "client", "iot:Publish": "topic", "iot:RetainPublish": "topic", "iot:Receive": "topic",
          "iot:Subscribe": "topicfilter"}


# Every action on every resource: the grant of a client that only watches or only drives a test.
EVERYTHING = {"iot:Connect": ["*"], "iot:Publish": ["*"], "iot:RetainPublish": ["*"], "iot:Subscribe": ["*"],
              "iot:Receive": ["*"]}


def document(allow: dict[str, list[str]], deny: dict[str, list[str]] | None = None) -> str:
    """An AWS IoT policy document: {action: [client id, topic or topic filter]} per effect."""
    statements = []
    for effect, grants in (("Allow", allow), ("Deny", deny or {})):
        for action, names in grants.items():
            resources = [f"arn:aws:iot:{REGION}:{ACCOUNT}:{_TYPES[action]}/{name}" for name in names]
            statements.append({"Effect": effect, "Action": action, "Resource": resources})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass
class Answer:
    documents: tuple[str, ...]
    principal_id: str
    refresh_in: float
    disconnect_in: float


class PolicyGateway:
    """password → the policy documents a client presenting it is granted."""

    def __init__(self):
        self._answers: dict[bytes, Answer] = {}
        self._lock = threading.Lock()  # tests change answers from their own thread
        self.calls: list[Presented] = []

    def allow(self, password: bytes, *documents: str, principal_id: str = "principal",
              refresh_in: float = 3600.0, disconnect_in: float = 86400.0) -> None:
        with self._lock:
            self._answers[password] = Answer(documents, principal_id, refresh_in, disconnect_in)

    def revoke(self, password: bytes) -> None:
        """From now on this password is refused, at a CONNECT or a refresh."""
        with self._lock:
            self._answers.pop(password, None)

    async def authorize(self, presented: Presented, *, connection_id: str) -> Grant:
        with self._lock:
            self.calls.append(presented)
            answer = self._answers.get(presented.password or b"")
        if answer is None:
            raise Refused("unknown_token")
        return Grant(answer.principal_id, answer.documents, answer.refresh_in, answer.disconnect_in,
                     REGION, ACCOUNT, presented.client_id)
