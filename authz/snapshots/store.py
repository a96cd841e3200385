"""The Django side of the DynamoDB table: conditional snapshot writes, reads
for the operator commands, and table creation."""
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from lambda_bridge import snapshot
from lambda_bridge.snapshot import Snapshot

log = logging.getLogger(__name__)

TTL_ATTRIBUTE = "ttl"

# Errors worth another try later; anything else (an item over 400 KB, a bad
# request) is recorded and left for an operator.
RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
}


# Connections beyond the pushes' for the single calls other threads make
# (reads, the signing-key item, table checks): about one per worker thread.
OTHER_CALLS = 16


@functools.cache
def client():
    """One client per process: boto3 clients are thread-safe, sessions are not.
    botocore's standard retry mode already backs off with jitter on throttling.

    Its connection pool holds every request the process can have in flight:
    the pushes, capped at SNAPSHOT_PUSH_CONCURRENCY by the one push pool
    (`_push_pool`), plus OTHER_CALLS. A request beyond the pool would open a
    connection only to throw it away ("Connection pool is full")."""
    return boto3.client(
        "dynamodb",
        region_name=settings.AWS_REGION,
        endpoint_url=settings.DYNAMODB_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5,
                      max_pool_connections=settings.SNAPSHOT_PUSH_CONCURRENCY + OTHER_CALLS),
    )


def _push_pool() -> ThreadPoolExecutor:
    """The process's one pool of push threads, shared by every worker thread:
    eight worker threads each starting their own 16 threads would put 128
    requests on the client's connections at once. Queued behind 16 threads
    they go as fast as the connections allow, and DynamoDB sets the pace."""
    return _push_pool_of(os.getpid(), settings.SNAPSHOT_PUSH_CONCURRENCY)


@functools.cache
def _push_pool_of(pid: int, size: int) -> ThreadPoolExecutor:
    # Keyed by pid: threads do not survive a fork (Celery's prefork pool).
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="snapshot-push")


@dataclass(frozen=True)
class Outcome:
    written: bool = False  # our version is now in the table
    stale: bool = False    # the table already holds this version or a newer one
    error: str = ""
    retryable: bool = False

    @property
    def done(self) -> bool:
        return self.written or self.stale


def put_if_newer(item: dict, version: int) -> bool:
    """Write `item` unless the table already holds its key at `version` or
    newer; False when it did. Every versioned item (snapshots, the signing-key
    item) is written this way, so a late or repeated write never puts an older
    state back. Any other failure raises."""
    try:
        client().put_item(
            TableName=settings.DYNAMODB_TABLE,
            Item=item,
            ConditionExpression="attribute_not_exists(pk) OR v < :v",
            ExpressionAttributeValues={":v": {"N": str(version)}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def put_snapshot(snap: Snapshot) -> Outcome:
    try:
        item = snapshot.to_item(snap, fmt=settings.SNAPSHOT_WRITE_FORMAT)
    except snapshot.SnapshotError as exc:
        # Such as a cut-off under a format-2 writer: this principal fails, with
        # the reason, and the rest of its batch is written (docs/snapshots.md).
        return Outcome(error=str(exc)[:500])
    if snap.gone:
        # DynamoDB's TTL removes tombstones once no older push can be in flight.
        item[TTL_ATTRIBUTE] = {"N": str(snap.generated_at + settings.SNAPSHOT_TOMBSTONE_DAYS * 86400)}
    try:
        written = put_if_newer(item, snap.version)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        return Outcome(error=f"{code}: {exc.response.get('Error', {}).get('Message', '')}"[:500],
                       retryable=code in RETRYABLE_CODES)
    except BotoCoreError as exc:  # connection refused, timeouts, broken responses
        return Outcome(error=f"{exc.__class__.__name__}: {exc}"[:500], retryable=True)
    return Outcome(written=True) if written else Outcome(stale=True)


def put_snapshots(snaps: list[Snapshot]) -> list[Outcome]:
    """Concurrent conditional writes. BatchWriteItem takes no conditions and a
    transaction fails as a whole, so fan-out is many PutItems on a pool."""
    if len(snaps) <= 1:
        return [put_snapshot(s) for s in snaps]
    return list(_push_pool().map(put_snapshot, snaps))


def get_item(key: str) -> dict | None:
    response = client().get_item(TableName=settings.DYNAMODB_TABLE, Key={"pk": {"S": key}}, ConsistentRead=True)
    return response.get("Item")


def ensure_table(*, wait_seconds: float = 30) -> list[str]:
    """Create the table and switch on TTL when either is missing; returns what it did."""
    done = []
    db = client()
    name = settings.DYNAMODB_TABLE
    try:
        db.describe_table(TableName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        db.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        done.append(f"created table {name}")
    deadline = time.monotonic() + wait_seconds
    while db.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name} is not ACTIVE after {wait_seconds:.0f} s")
        time.sleep(0.5)
    ttl = db.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
        db.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
        done.append(f"enabled TTL on {name}.{TTL_ATTRIBUTE}")
    return done


# --- anti-entropy reads (authz/snapshots/antientropy.py) ------------------------------------------


class TableMissing(Exception):
    """The snapshot table does not exist (a recreated endpoint, a deleted table)."""


def table_exists() -> bool:
    """False only when DynamoDB says the table is not there; anything else
    (unreachable, throttled) raises, since it says nothing about the table."""
    try:
        client().describe_table(TableName=settings.DYNAMODB_TABLE)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


BATCH_GET_LIMIT = 100  # DynamoDB's most keys per BatchGetItem


def stored_versions(keys: list[str]) -> dict[str, int]:
    """key → the version the table holds, for the keys that have an item.
    Only `pk` and `v` are read, so a large snapshot costs no more than a small one."""
    name = settings.DYNAMODB_TABLE
    found: dict[str, int] = {}
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request = {name: {"Keys": [{"pk": {"S": k}} for k in keys[start:start + BATCH_GET_LIMIT]],
                          "ProjectionExpression": "pk, #v", "ExpressionAttributeNames": {"#v": "v"},
                          "ConsistentRead": True}}
        attempt = 0
        while request:
            try:
                response = client().batch_get_item(RequestItems=request)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    raise TableMissing(name) from None
                raise
            for item in response.get("Responses", {}).get(name, []):
                found[item["pk"]["S"]] = int(item["v"]["N"]) if "v" in item else 0
            request = response.get("UnprocessedKeys") or {}
            if request:  # throttled: back off as AWS asks, then read the rest
                attempt += 1
                time.sleep(min(0.05 * 2 ** attempt, 2))
    return found
