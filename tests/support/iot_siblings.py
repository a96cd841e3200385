"""Stand-ins for local_iot's own broker and gateway, for the data plane's
tests until the parts are integrated (docs/local-iot.md#the-data-plane).

They are not fakes of AWS or of any external service: they stand for our
sibling modules (local_iot/broker.py, local_iot/gateway.py) and do only what
the data plane needs from them, recording each call so that a test can see
what the data plane asked for. The lead replaces them with the real parts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

from local_iot.gateway import Presented, Refused


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class RecordingBroker:
    """Broker.publish / delete_connection / get_connection, recorded.
    `connections` holds the GetConnection bodies of the live clients."""

    def __init__(self, connections: dict[str, dict] | None = None):
        self.connections = dict(connections or {})
        self.published: list[Published] = []
        self.deleted: list[tuple[str, bool, bool]] = []

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        self.published.append(Published(topic, payload, qos, retain))

    async def delete_connection(self, client_id: str, *, clean_session: bool = False,
                                prevent_will: bool = False) -> bool:
        self.deleted.append((client_id, clean_session, prevent_will))
        return self.connections.pop(client_id, None) is not None

    def get_connection(self, client_id: str) -> dict | None:
        return self.connections.get(client_id)


@dataclass(frozen=True)
class ListedGrant:
    """A Grant whose `can` answers from a list of (action, name) pairs."""

    allowed: frozenset[tuple[str, str]]

    def can(self, action: str, name: str) -> bool:
        return (action, name) in self.allowed


@dataclass
class TokenGateway:
    """Gateway.authorize: the token under `token_key_name` (header first,
    then query string) names a grant; any other token is refused."""

    token_key_name: str
    grants: dict[str, ListedGrant]
    calls: list[tuple[Presented, str]] = field(default_factory=list)

    async def authorize(self, presented: Presented, *, connection_id: str) -> ListedGrant:
        self.calls.append((presented, connection_id))
        token = presented.headers.get(self.token_key_name)
        if token is None:
            token = (parse_qs(presented.query_string).get(self.token_key_name) or [None])[0]
        if token not in self.grants:
            raise Refused("lambda_refused", "unknown token")
        return self.grants[token]
