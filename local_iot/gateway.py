"""The AWS IoT gateway at run time (docs/local-iot.md#the-custom-authorizer-contract):
for every connection, every refresh and every HTTPS publish it plays the
contract of local_iot/authorizer_contract.py against the real
`lambda_bridge` handler and turns an accepted answer into a `Grant`.

1. find the authorizer's parameters (`find_credentials`) and which of the
   two authorizers the client named: the signed one (platform JWTs) or the
   unsigned one (compact device tokens), both backed by the one handler;
2. at the signed one, verify the signature against the token-signing public
   keys read from the key item (`_KeyReader`, `gateway_verifies`); the
   unsigned one checks nothing, as AWS with signing disabled;
3. build the event (`build_event`);
4. invoke the handler one call at a time, with AWS's 5 s limit counted from
   the moment the call asks for its turn, and a bounded queue;
5. hold the answer to the response contract (`check_response`).

AWS's pages this follows:
https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html,
.../custom-auth-lambda.html, .../config-custom-auth.html (signing, the 5 s limit).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Mapping

from lambda_bridge import evaluator, keys
from lambda_bridge.config import Config, ConfigError
from lambda_bridge.store import DynamoStore
from local_iot import limits
from local_iot.authorizer_contract import (
    Presented,
    Reason,
    Refused,
    build_event,
    check_response,
    find_credentials,
    gateway_verifies,
)

# Presented and Refused are part of this module's interface too: the broker,
# the listeners and the data plane take them from here with the Gateway.
__all__ = ["Gateway", "Grant", "Presented", "Reason", "Refused"]

log = logging.getLogger("local_iot.gateway")

# The authorizers' names, as platform/authorizer.yaml deploys them
# (AuthorizerName, CompactAuthorizerName).
DEFAULT_AUTHORIZER_NAME = "devshare"
DEFAULT_COMPACT_AUTHORIZER_NAME = "devshare-compact"

# How long the token-signing keys read from the key item are trusted. AWS
# reads an authorizer's keys from its own configuration; locally they are the
# key item, and a rotation test must see a new key at once: one second.
KEY_CACHE_SECONDS = 1.0

# Invocations waiting for their turn behind the one running. AWS throttles a
# Lambda past its concurrency and refuses the connection; how many wait
# first is not documented (assumed: enough for a burst of reconnects).
MAX_WAITING_INVOCATIONS = 100


@dataclass(frozen=True)
class Grant:
    """An accepted authorizer answer: what this connection may do, and for how long."""

    principal_id: str
    documents: tuple[str, ...]
    refresh_in: float  # seconds of real time (already scaled) until the gateway asks again
    disconnect_in: float  # seconds of real time (already scaled) until the connection is closed
    region: str  # where the policy ARNs point: arn:aws:iot:{region}:{account}:...
    account: str
    # The MQTT client id iot:Connect is judged on; None for an HTTPS publish,
    # which has no client id and so no Connect to require (docs/local-iot.md#the-data-plane).
    client_id: str | None
    # Verdicts already given, (action, name) -> allowed; see can().
    _verdicts: dict[tuple[str, str], bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def _judge(self) -> evaluator.Connection | None:
        # Built once per grant, so a PUBLISH or a delivery never re-parses policy JSON.
        try:
            return evaluator.Connection(self.documents, self.region, self.account, self.client_id or "")
        except evaluator.PolicyError:
            # AWS refuses an authorizer answer whose policy it cannot parse; a grant
            # that slipped through anyway allows nothing.
            return None

    def can(self, action: str, name: str) -> bool:
        """iot:Connect (name = client id), iot:Publish, iot:RetainPublish,
        iot:Receive (name = topic), iot:Subscribe (name = topic filter).
        As the broker judges it: explicit Deny wins, iot:RetainPublish also
        needs iot:Publish, and anything but iot:Connect also needs iot:Connect
        on this grant's client id (lambda_bridge.evaluator.Connection)."""
        # A grant's documents never change, so neither does a verdict: every PUBLISH
        # and every delivery asks again about the same few topics, and matching
        # the policy's globs each time was a third of the broker's time per message.
        verdicts = self._verdicts
        key = (action, name)
        verdict = verdicts.get(key)
        if verdict is None:
            if len(verdicts) >= limits.VERDICTS_PER_GRANT:
                verdicts.clear()  # a client walking endless topics costs evaluation, not memory
            verdict = verdicts[key] = self._judged(action, name)
        return verdict

    def _judged(self, action: str, name: str) -> bool:
        judge = self._judge
        if judge is None:
            return False
        if self.client_id is None:
            # No CONNECT, so no Connect prerequisite; the action's own ones
            # (RetainPublish needs Publish) still hold.
            return judge.permits(action, name)
        return judge.can(action, name)


# --- the gateway -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """The part of the Lambda context object the handler reads."""

    aws_request_id: str


class Gateway:
    def __init__(self, *, lambda_env: Mapping[str, str], token_key_name: str,
                 authorizer_name: str = DEFAULT_AUTHORIZER_NAME,
                 compact_authorizer_name: str = DEFAULT_COMPACT_AUTHORIZER_NAME, time_scale: float = 1.0,
                 invoke_timeout: float = 5.0, handler=None, max_waiting: int = MAX_WAITING_INVOCATIONS):
        if authorizer_name == compact_authorizer_name:
            # One name, two signing settings: AWS keeps one authorizer per name.
            raise ValueError("the signed and the unsigned authorizer need different names")
        self.lambda_env = dict(lambda_env)
        self.authorizer_name, self.compact_authorizer_name = authorizer_name, compact_authorizer_name
        self.token_key_name = token_key_name
        self.time_scale, self.invoke_timeout = time_scale, invoke_timeout
        # The region and account policy ARNs name; a Lambda environment that
        # does not parse still starts (the handler then refuses everyone).
        try:
            config = Config.from_env(self.lambda_env)
        except ConfigError:
            config = None
        self.region = config.region if config else ""
        self.account = config.account if config else ""
        self._keys = _KeyReader(config, self.lambda_env)
        # Built once, here, like a Lambda's cold start; a bad setting is logged
        # by the handler now and every connection is refused until it is fixed.
        self._handler: Callable = handler if handler is not None else _build_handler(self.lambda_env)
        # One invocation at a time, like a Lambda with one instance: decisions
        # come in a fixed order, and the handler's caches see one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local_iot-authorizer")
        self._turn = asyncio.Lock()
        self.max_waiting, self._waiting = max_waiting, 0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def authorize(self, presented: Presented, *, connection_id: str) -> Grant:
        """Signature check, event, one invocation of the handler (serially,
        with the timeout), response contract. Raises Refused."""
        started = time.perf_counter()
        record = {"event": "gateway", "connection": connection_id, "protocol": presented.protocol,
                  "tls": presented.tls, "client_id": presented.client_id, "source_ip": presented.source_ip}
        try:
            grant = await self._authorize(presented, connection_id, record)
        except Refused as refusal:
            record.update(decision="deny", reason=refusal.reason, detail=refusal.detail or None)
            raise
        else:
            record.update(decision="allow", reason="ok", principal=grant.principal_id,
                          documents=len(grant.documents), refresh_in=grant.refresh_in,
                          disconnect_in=grant.disconnect_in)
            return grant
        finally:
            record["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
            # Never the token, signature, username or password: they are credentials.
            log.info(json.dumps(record, separators=(",", ":")))

    async def _authorize(self, presented: Presented, connection_id: str, record: dict) -> Grant:
        found = find_credentials(presented, self.token_key_name)
        signed = self._signing(found.authorizer_name)
        record["authorizer"] = "signed" if signed else "unsigned"
        if signed:
            await self._verify_signature(found.token, found.signature)
        # Unsigned, nothing is checked and the token (when found under the
        # token key name) is handed over as it came: the Lambda verifies it.
        event = build_event(presented, connection_id=connection_id, token=found.token or None,
                            signature_verified=signed)
        answer = check_response(await self._invoke(event))
        return Grant(principal_id=answer.principal_id, documents=answer.documents,
                     refresh_in=answer.refresh * self.time_scale, disconnect_in=answer.disconnect * self.time_scale,
                     region=self.region, account=self.account, client_id=presented.client_id)

    def _signing(self, name: str | None) -> bool:
        """Whether the authorizer the client named has signing on."""
        if name is None:
            # Devshare's stack sets no default authorizer, so AWS would fall
            # back to certificates, which local_iot does not offer (assumed).
            raise Refused(Reason.NO_AUTHORIZER_NAME)
        if name == self.authorizer_name:
            return True
        if name == self.compact_authorizer_name:
            return False
        raise Refused(Reason.UNKNOWN_AUTHORIZER, name[:128])

    async def _verify_signature(self, token: str | None, signature: str | None) -> None:
        """What AWS checks before it invokes an authorizer with signing on."""
        if not token:
            raise Refused(Reason.NO_TOKEN)
        if not signature:
            raise Refused(Reason.NO_SIGNATURE)
        if not gateway_verifies(token, signature, await self._keys.public_pems()):
            raise Refused(Reason.BAD_SIGNATURE)

    async def _invoke(self, event: dict):
        """One handler call, in turn. The 5 s limit runs from here: time spent
        waiting behind a slow call counts, as it would for a client waiting
        on AWS. A call that times out runs on and keeps the turn until it
        really ends, so calls never pile up in the worker's queue; at most
        `max_waiting` calls wait for the turn, the rest are refused at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.invoke_timeout
        if self._waiting >= self.max_waiting:
            raise Refused(Reason.INVOKE_THROTTLED, f"{self._waiting} invocations already waiting")
        self._waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._turn.acquire()
        except TimeoutError:
            raise Refused(Reason.INVOKE_TIMEOUT, f"no turn in {self.invoke_timeout:g} s") from None
        finally:
            self._waiting -= 1
        try:
            call = loop.run_in_executor(self._executor, self._call, event)
        except BaseException:
            self._turn.release()
            raise
        call.add_done_callback(lambda _: self._turn.release())
        try:
            # shield: the timeout gives up waiting, not the call (AWS closes
            # the connection after 5 s; config-custom-auth.html).
            return await asyncio.wait_for(asyncio.shield(call), max(deadline - loop.time(), 0))
        except TimeoutError:
            raise Refused(Reason.INVOKE_TIMEOUT, f"no answer in {self.invoke_timeout:g} s") from None
        except Exception as exc:  # noqa: BLE001  (a failed invocation: AWS refuses)
            raise Refused(Reason.INVOKE_FAILED, exc.__class__.__name__) from None

    def _call(self, event: dict):
        return self._handler(event, _Context(aws_request_id=str(uuid.uuid4())))


def _build_handler(env: Mapping[str, str]):
    """lambda_bridge.handler.build(env). Importing that module also starts a
    handler from this process's own environment, as the Lambda runtime would;
    what that one prints is about the shell, not `env`, so it is dropped."""
    with contextlib.redirect_stdout(io.StringIO()):
        from lambda_bridge.handler import build
    return build(env)


class _KeyReader:
    """The authorizer's token-signing public keys, read from the key item with
    the Lambda's own store settings and kept for KEY_CACHE_SECONDS."""

    def __init__(self, config: Config | None, env: Mapping[str, str]):
        # The client is made here, in the starting thread: boto3's default
        # session is not safe to make clients from in several threads.
        self._store: DynamoStore | None = None
        self._unusable = "the Lambda's settings do not parse" if config is None else ""
        if config is not None:
            try:
                self._store = DynamoStore.from_config(config, credentials=_credentials(env))
            except Exception as exc:  # noqa: BLE001  (e.g. botocore refusing the endpoint URL)
                self._unusable = f"{exc.__class__.__name__} making the DynamoDB client"
        self._pems: list[str] = []
        self._read_at = float("-inf")
        self._reading = asyncio.Lock()

    async def public_pems(self) -> list[str]:
        async with self._reading:
            if time.monotonic() - self._read_at > KEY_CACHE_SECONDS:
                self._pems = await asyncio.to_thread(self._read)
                self._read_at = time.monotonic()
            return self._pems

    def _read(self) -> list[str]:
        if self._store is None:
            raise Refused(Reason.KEYS_UNAVAILABLE, self._unusable)
        try:
            item = self._store.get(keys.ITEM_KEY)
        except Exception as exc:  # noqa: BLE001  (network, missing table, permissions)
            raise Refused(Reason.KEYS_UNAVAILABLE, exc.__class__.__name__) from None
        if item is None:
            raise Refused(Reason.KEYS_UNAVAILABLE, "no key item")
        try:
            return list(keys.from_item(item).verifying().values())
        except keys.KeyringError as exc:
            raise Refused(Reason.KEYS_UNAVAILABLE, str(exc)[:200]) from None


def _credentials(env: Mapping[str, str]) -> dict[str, str | None]:
    # As lambda_bridge.handler reads them: the keys in env, else boto3's chain.
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": env.get("AWS_SESSION_TOKEN") or None}
    return {}
