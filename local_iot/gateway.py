"""The custom-authorizer contract, as the AWS IoT gateway plays it
(docs/local-iot.md#the-custom-authorizer-contract).

SKELETON: the names and signatures below are the contract between the
broker, the listeners and the gateway; the bodies are to be written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

from lambda_bridge import evaluator


@dataclass(frozen=True)
class Presented:
    """What a client presented: an MQTT CONNECT, a WebSocket upgrade, an HTTPS publish."""

    protocol: str  # "mqtt" (CONNECT over TCP or TLS), "ws" (MQTT over a WebSocket), "http" (HTTPS publish)
    tls: bool
    server_name: str | None = None  # TLS SNI, else the Host header's name
    client_id: str | None = None  # MQTT CONNECT only
    username: str | None = None  # MQTT CONNECT only
    password: bytes | None = None  # MQTT CONNECT only, raw bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # HTTP / upgrade request, names lower-case
    query_string: str = ""  # the request URL's, without "?"
    source_ip: str = ""


class Refused(Exception):
    """The gateway will not let this client in (or keep it in)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Grant:
    """An accepted authorizer answer: what this connection may do, and for how long."""

    principal_id: str
    documents: tuple[str, ...]
    refresh_in: float  # seconds of real time (already scaled) until the gateway asks again
    disconnect_in: float  # seconds of real time (already scaled) until the connection is closed
    region: str  # where the policy ARNs point: arn:aws:iot:{region}:{account}:...
    account: str
    client_id: str  # the MQTT client id the documents are judged for (iot:Connect's default)

    @cached_property
    def _judge(self) -> evaluator.Connection | None:
        # Built once per grant, so a PUBLISH or a delivery never re-parses policy JSON.
        try:
            return evaluator.Connection(self.documents, self.region, self.account, self.client_id)
        except evaluator.PolicyError:
            # AWS refuses an authorizer answer whose policy it cannot parse; a grant
            # that slipped through anyway allows nothing.
            return None

    def can(self, action: str, name: str) -> bool:
        """iot:Connect (name = client id), iot:Publish, iot:RetainPublish,
        iot:Receive (name = topic), iot:Subscribe (name = topic filter).
        As the broker judges it: explicit Deny wins, and anything but
        iot:Connect also needs iot:Connect on this grant's client id."""
        judge = self._judge
        return judge is not None and judge.can(action, name)


class Gateway:
    def __init__(self, *, lambda_env: Mapping[str, str], authorizer_name: str, token_key_name: str,
                 signing: bool = True, time_scale: float = 1.0, invoke_timeout: float = 5.0, handler=None):
        raise NotImplementedError

    async def authorize(self, presented: Presented, *, connection_id: str) -> Grant:
        """Signature check, event, one invocation of the handler (serially,
        with the timeout), response contract. Raises Refused."""
        raise NotImplementedError
