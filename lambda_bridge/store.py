"""The authorizer's only I/O: GetItem on the snapshot table."""
from __future__ import annotations

from typing import Mapping

import boto3
from botocore.config import Config as BotoConfig

from lambda_bridge.config import Config

# The gateway gives the whole Lambda 5 s, and a cold call reads twice (key
# item, snapshot). One attempt of at most 2 s each keeps the worst case inside
# the budget, so a stalled table still gets a logged refusal rather than a
# timeout; the client's reconnect is the retry.
_CLIENT_CONFIG = BotoConfig(connect_timeout=0.5, read_timeout=1.5, retries={"mode": "standard", "max_attempts": 1})


class DynamoStore:
    def __init__(self, client, table: str):
        self.client = client
        self.table = table

    @classmethod
    def from_config(cls, config: Config, *, credentials: Mapping[str, str | None] | None = None) -> DynamoStore:
        """`credentials`: boto3's aws_* keyword arguments; none, its own chain."""
        client = boto3.client("dynamodb", region_name=config.table_region, endpoint_url=config.endpoint_url,
                              config=_CLIENT_CONFIG, **(credentials or {}))
        return cls(client, config.table)

    def get(self, key: str) -> dict | None:
        # Strongly consistent: a revoke written a moment ago must not come back
        # through a lagging replica on the next connect.
        response = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True)
        return response.get("Item")
