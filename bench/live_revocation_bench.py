"""Live revocation: from the service call that narrows access to the moment
the affected MQTT client sees its connection closed (docs/live-access.md),
for the three narrowings issue 15 names:

- **revocation**, BENCH_LIVE_REVOCATIONS (100) times: a sharee of one
  device, connected and subscribed to its telemetry, has the share revoked
  (`revoke_share`);
- **transfer**, BENCH_LIVE_TRANSFERS (100) times: a device connected with a
  device token its owner issued, subscribed to its command topics, is
  transferred to another member (`transfer_device`); the old token must then
  be refused at reconnect with `token_revoked` (the device's cut-off);
- **removal**, BENCH_LIVE_REMOVALS (100) times: a member's app, connected and
  subscribed to a device shared with them, and the member removed by a tenant
  admin (`remove_member`); the old token must then be refused at reconnect
  with `principal_gone` (the removed member's snapshot is a tombstone).

Each client is paho MQTT 5 over plain TCP to an in-process local_iot (the
real authorizer on the bench's moto table). Through Redis, one real Celery
worker process (BENCH_WORKER_THREADS threads) pushes the snapshot to moto and
then calls iot-data DeleteConnection on local_iot's data plane.

Split, from wall-clock stamps on one machine: the call → the principal's
snapshot written (PrincipalSync.pushed_at), written → the cut recorded done
(SessionCut.pushed_at, stamped after DeleteConnection answered), and the
call → the client's on_disconnect. The client usually sees the disconnect
before the worker records the cut, so "cut done → client sees" is negative.
The refusal at reconnect comes after the measurement and is not timed; its
reason is read from the authorizer's own log line.

Environment: BENCH_DATABASE_URL, BENCH_BROKER_URL (redis://…/8),
BENCH_LIVE_REVOCATIONS, BENCH_LIVE_TRANSFERS, BENCH_LIVE_REMOVALS (100
each), BENCH_WORKER_THREADS (8).
"""
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import PIPELINE_SETUP, md_table, percentile, pipeline, write_results

REVOCATIONS = int(os.environ.get("BENCH_LIVE_REVOCATIONS", "100"))
TRANSFERS = int(os.environ.get("BENCH_LIVE_TRANSFERS", "100"))
REMOVALS = int(os.environ.get("BENCH_LIVE_REMOVALS", "100"))
GOAL_P95_MS = 2000  # issue 15


class LocalIotThread:
    """local_iot's server on an event loop of its own thread, on ephemeral
    ports, checking iot-data calls against `access_key_id`."""

    def __init__(self, lambda_env: dict, cert_dir: str, access_key_id: str):
        from local_iot.server import LocalIot

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.iot = LocalIot(lambda_env=lambda_env, mqtt_port=0, tls_port=0, http_port=0, cert_dir=cert_dir,
                            access_key_id=access_key_id)
        self._run(self.iot.start())

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def stop(self):
        self._run(self.iot.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class AuthorizerLog:
    """The authorizer's JSON lines (its CloudWatch log), which it prints on
    stdout: kept here instead of the bench's output, and read for the reason
    of a refusal."""

    def __init__(self):
        self.buffer = io.StringIO()

    def capturing(self):
        return contextlib.redirect_stdout(self.buffer)

    def last_refusal(self, principal: str) -> str | None:
        """The reason of the latest refusal of `principal` ("user:42", "device:d-…")."""
        records = [json.loads(line) for line in self.buffer.getvalue().splitlines() if line.startswith("{")]
        reasons = [record["reason"] for record in records
                   if record.get("event") == "authorize" and record.get("principal") == principal
                   and record.get("decision") == "deny"]
        return reasons[-1] if reasons else None


class Connection:
    """A paho MQTT 5 client that stamps the wall-clock moment it is
    disconnected and never reconnects: paho's own loop would wait a second to
    try again, and a reconnect is what the bench checks separately."""

    def __init__(self, port: int, creds):
        self.answered, self.subscribed, self.gone = threading.Event(), threading.Event(), threading.Event()
        self.accepted = False
        self.disconnected_at = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=creds.client_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(creds.mqtt_username, None)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        self.accepted = not reason_code.is_failure
        self.answered.set()

    def _on_disconnect(self, *_):
        if self.disconnected_at is None:
            self.disconnected_at = time.time()
        self.client.disconnect()  # the loop ends instead of reconnecting
        self.answered.set()
        self.gone.set()

    def admitted(self) -> bool:
        if not self.answered.wait(10):
            raise TimeoutError("no CONNACK")
        return self.accepted

    def subscribe(self, topic_filter: str) -> None:
        if not self.admitted():
            raise RuntimeError("the client was not admitted")
        self.client.subscribe(topic_filter, qos=1)
        if not self.subscribed.wait(10):
            raise RuntimeError("no SUBACK")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class Watched:
    """One client to cut: its credentials, the principal whose outbox rows
    and authorizer log lines are its, and what it subscribes to."""

    creds: object
    principal: str  # a user's id or a thing name, as the outbox rows name it
    label: str  # as the authorizer's log names it
    topic_filter: str


def lambda_env() -> dict:
    from django.conf import settings

    from authz.tokens import simulator

    return simulator.lambda_environment(
        table=settings.DYNAMODB_TABLE, issuer=settings.IOT_TOKEN_ISSUER, audience=settings.IOT_TOKEN_AUDIENCE,
        token_key_name=settings.IOT_TOKEN_KEY_NAME, account=settings.AWS_ACCOUNT_ID, region=settings.AWS_REGION,
        iot_region=settings.IOT_REGION, endpoint_url=settings.DYNAMODB_ENDPOINT_URL,
        access_key_id=settings.AWS_ACCESS_KEY_ID, secret_access_key=settings.AWS_SECRET_ACCESS_KEY)


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)


def wait_written(principal: str) -> None:
    from authz.models import PrincipalSync

    wait_for(lambda: not PrincipalSync.objects.filter(principal=principal).lagging().exists(), "the push")


def measured(*, watched: Watched, narrow, port: int) -> dict:
    """Connect `watched`, run `narrow()` and time it until the client sees
    its connection closed and the worker has recorded the cut."""
    from authz.models import PrincipalSync, SessionCut

    client = Connection(port, watched.creds)
    try:
        client.subscribe(watched.topic_filter)
        start = time.time()
        narrow()
        called = time.time()
        if not client.gone.wait(60):
            raise TimeoutError("the client was never disconnected")
        cut = SessionCut.objects.filter(principal=watched.principal)
        wait_for(lambda: cut.exists() and not cut.lagging().exists(), "the cut's record")
    finally:
        client.close()
    written = PrincipalSync.objects.get(principal=watched.principal).pushed_at.timestamp()
    cut_done = cut.get().pushed_at.timestamp()
    return {"call": called - start, "written": written - start, "cut": cut_done - written,
            "seen": client.disconnected_at - start, "seen_after_cut": client.disconnected_at - cut_done}


def refusal(*, watched: Watched, port: int, log: AuthorizerLog) -> str:
    """The reason the old token is refused at reconnect (after the
    measurement); raises when it is admitted."""
    again = Connection(port, watched.creds)
    try:
        if again.admitted():
            raise RuntimeError(f"{watched.label}'s old token was admitted again")
    finally:
        again.close()
    return log.last_refusal(watched.label)


def one_revocation(*, owner, device, grantee, port: int) -> dict:
    from authz.tokens import credentials
    from devices import services
    from devices.models import Level

    share = services.create_share(actor=owner, grantee=grantee, device=device, level=Level.VIEW)
    wait_written(str(grantee.pk))
    creds = credentials.issue_user_credentials(actor=grantee, tenant=device.tenant)
    watched = Watched(creds, str(grantee.pk), f"user:{grantee.pk}", f"dev/{device.thing_name}/out/#")
    return measured(watched=watched, narrow=lambda: services.revoke_share(actor=owner, share=share), port=port)


def one_transfer(*, owner, heir, device, port: int, log: AuthorizerLog) -> dict:
    from authz.tokens import credentials
    from devices import services

    creds = credentials.issue_device_credentials(actor=owner, device=device)
    watched = Watched(creds, device.thing_name, f"device:{device.thing_name}", f"dev/{device.thing_name}/in/#")
    run = measured(watched=watched, port=port,
                   narrow=lambda: services.transfer_device(actor=owner, device=device, new_owner=heir))
    return {**run, "refused": refusal(watched=watched, port=port, log=log)}


def one_removal(*, admin, membership, device, port: int, log: AuthorizerLog) -> dict:
    from authz.tokens import credentials
    from devices import services

    person = membership.user
    creds = credentials.issue_user_credentials(actor=person, tenant=device.tenant)
    watched = Watched(creds, str(person.pk), f"user:{person.pk}", f"dev/{device.thing_name}/out/#")
    run = measured(watched=watched, port=port,
                   narrow=lambda: services.remove_member(actor=admin, membership=membership))
    return {**run, "refused": refusal(watched=watched, port=port, log=log)}


def ms(values, p) -> str:
    return f"{percentile(values, p) * 1000:.0f}"


def table(call: str, runs: list[dict]) -> tuple[str, bool]:
    """The split's table, and whether p95 from the call to the disconnect meets the goal."""
    rows = []
    for label, key in ((f"service call ({call})", "call"), ("call → snapshot written", "written"),
                       ("snapshot written → cut recorded done", "cut"), ("call → client sees the disconnect", "seen"),
                       ("cut recorded done → client sees it", "seen_after_cut")):
        values = [run[key] for run in runs]
        rows.append((label, ms(values, 50), ms(values, 95), f"{max(values) * 1000:.0f}"))
    met = percentile([run["seen"] for run in runs], 95) * 1000 < GOAL_P95_MS
    return md_table(["narrowing → disconnect", "p50 ms", "p95 ms", "max ms"], rows), met


def refusals(runs: list[dict], expected: str) -> str:
    """How many old tokens were refused at reconnect for `expected`; raises on any other reason."""
    reasons = sorted({run["refused"] for run in runs})
    if reasons != [expected]:
        raise RuntimeError(f"refused at reconnect for {reasons}, not only {expected}")
    return f"old token refused at reconnect: {len(runs)}/{len(runs)}, reason {expected}"


def setting_up(tenant_slug: str):
    """A tenant with an owner, a tenant admin, one shared device for the
    revocations and removals, devices to transfer, and the people."""
    from authz.snapshots import outbox
    from bench.common import wait_in_sync
    from devices import services
    from devices.models import Device, DeviceType, Level, Membership, Tenant, User

    tenant = Tenant.objects.create(name="Live", slug=tenant_slug)
    kind = DeviceType.objects.create(tenant=tenant, name="Lock", slug="lock")
    owner, heir, admin = (User.objects.create(email=f"{name}@live.test") for name in ("owner", "heir", "admin"))
    sharees = User.objects.bulk_create([User(email=f"u{i}@live.test") for i in range(REVOCATIONS)])
    leaving = User.objects.bulk_create([User(email=f"m{i}@live.test") for i in range(REMOVALS)])
    Membership.objects.bulk_create([Membership(tenant=tenant, user=u) for u in [owner, heir, *sharees, *leaving]])
    Membership.objects.create(tenant=tenant, user=admin, role=Membership.Role.ADMIN)
    device = Device.objects.create(tenant=tenant, owner=owner, device_type=kind, name="Front door")
    things = Device.objects.bulk_create([Device(tenant=tenant, owner=owner, device_type=kind, name=f"Plug {i}")
                                         for i in range(TRANSFERS)])
    for person in leaving:  # something to be connected to when removed
        services.create_share(actor=owner, grantee=person, device=device, level=Level.VIEW)
    outbox.record_everyone(tenants=[tenant])  # the devices' own snapshots
    wait_in_sync(tenant, timeout=120)
    memberships = Membership.objects.filter(tenant=tenant, user__in=leaving).select_related("user").order_by("pk")
    return {"owner": owner, "heir": heir, "admin": admin, "device": device, "sharees": sharees,
            "things": things, "memberships": list(memberships)}


def main() -> int:
    worker_log = tempfile.TemporaryFile("w+")
    log = AuthorizerLog()
    with pipeline("live_revocation") as start_worker, tempfile.TemporaryDirectory() as certs:
        from django.conf import settings

        from authz.tokens import rotation

        rotation.rotate(actor=None)  # a signing key, published to the bench table
        iot = LocalIotThread(lambda_env(), certs, access_key_id=settings.AWS_ACCESS_KEY_ID)
        try:
            os.environ["IOT_DATA_ENDPOINT_URL"] = f"http://127.0.0.1:{iot.iot.ports['http']}"
            settings.IOT_ENDPOINT = f"localhost:{iot.iot.ports['tls']}"
            start_worker(worker_log)
            port = iot.iot.ports["mqtt"]
            with log.capturing():
                world = setting_up("live")
                owner, device = world["owner"], world["device"]
                revocations = [one_revocation(owner=owner, device=device, grantee=person, port=port)
                               for person in world["sharees"]]
                transfers = [one_transfer(owner=owner, heir=world["heir"], device=thing, port=port, log=log)
                             for thing in world["things"]]
                removals = [one_removal(admin=world["admin"], membership=membership, device=device, port=port,
                                        log=log)
                            for membership in world["memberships"]]
        finally:
            iot.stop()

    sections, verdicts = [], []
    for title, call, runs, expected in (
            (f"{REVOCATIONS} share revocations, one sharee each", "revoke_share", revocations, None),
            (f"{TRANSFERS} transfers, one device connected with its device token each", "transfer_device",
             transfers, "token_revoked"),
            (f"{REMOVALS} member removals, one app each", "remove_member", removals, "principal_gone")):
        text, met = table(call, runs)
        verdicts.append(met)
        note = f"\n{refusals(runs, expected)}\n" if expected else ""
        sections.append(f"{title}; goal p95 < {GOAL_P95_MS} ms: {'met' if met else 'missed'}\n\n{text}{note}")
    text = f"Live revocation, paho MQTT 5 to local_iot ({PIPELINE_SETUP})\n\n" + "\n".join(sections)
    print(text)
    write_results("live_revocation_bench", text, {
        "setup": PIPELINE_SETUP, "revocations": REVOCATIONS, "transfers": TRANSFERS, "removals": REMOVALS,
        "tables": sections, "runs": {"revocation": revocations, "transfer": transfers, "removal": removals}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
