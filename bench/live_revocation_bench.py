"""Live revocation: from the service call that revokes a share to the moment
the sharee's MQTT client sees its connection closed (docs/live-access.md).

BENCH_LIVE_REVOCATIONS (100) times: a sharee of one device, connected with
paho to an in-process local_iot (the real authorizer on the bench's moto
table) over plain MQTT 5 and subscribed to the device's telemetry, has the
share revoked by `revoke_share`. Through Redis, one real Celery worker
process (BENCH_WORKER_THREADS threads) pushes the snapshot to moto and then
calls iot-data DeleteConnection on local_iot's data plane.

Split, from wall-clock stamps on one machine: the call → the snapshot
written (PrincipalSync.pushed_at), written → the cut recorded done
(SessionCut.pushed_at, stamped after DeleteConnection answered), and the
call → the client's on_disconnect. The client usually sees the disconnect
before the worker records the cut, so "cut done → client sees" is negative.

Environment: BENCH_DATABASE_URL, BENCH_BROKER_URL (redis://…/8),
BENCH_LIVE_REVOCATIONS (100), BENCH_WORKER_THREADS (8).
"""
import asyncio
import contextlib
import io
import os
import sys
import tempfile
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import PIPELINE_SETUP, md_table, percentile, pipeline, write_results

REVOCATIONS = int(os.environ.get("BENCH_LIVE_REVOCATIONS", "100"))
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


class Sharee:
    """A paho MQTT 5 client that stamps the wall-clock moment it is disconnected."""

    def __init__(self, port: int, creds):
        self.connected, self.subscribed, self.gone = threading.Event(), threading.Event(), threading.Event()
        self.disconnected_at = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=creds.client_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(creds.mqtt_username, None)
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def _on_disconnect(self, *_):
        if self.disconnected_at is None:  # the first one; paho's loop may try again after it
            self.disconnected_at = time.time()
        self.gone.set()

    def subscribe(self, topic_filter: str) -> None:
        if not self.connected.wait(10):
            raise RuntimeError("the sharee was not admitted")
        self.client.subscribe(topic_filter, qos=1)
        if not self.subscribed.wait(10):
            raise RuntimeError("no SUBACK")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


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


def one_revocation(*, owner, device, grantee, port: int) -> dict:
    from authz.models import PrincipalSync, SessionCut
    from authz.tokens import credentials
    from devices import services
    from devices.models import Level

    share = services.create_share(actor=owner, grantee=grantee, device=device, level=Level.VIEW)
    sync = PrincipalSync.objects.filter(principal=str(grantee.pk))
    wait_for(lambda: not sync.lagging().exists(), "the grant's push")
    creds = credentials.issue_user_credentials(actor=grantee, tenant=device.tenant)
    sharee = Sharee(port, creds)
    try:
        sharee.subscribe(f"dev/{device.thing_name}/out/#")
        start = time.time()
        services.revoke_share(actor=owner, share=share)
        called = time.time()
        if not sharee.gone.wait(60):
            raise TimeoutError("the sharee was never disconnected")
        cut = SessionCut.objects.filter(principal=str(grantee.pk))
        wait_for(lambda: cut.exists() and not cut.lagging().exists(), "the cut's record")
    finally:
        sharee.close()
    written = sync.get().pushed_at.timestamp()
    cut_done = cut.get().pushed_at.timestamp()
    return {"call": called - start, "written": written - start, "cut": cut_done - written,
            "seen": sharee.disconnected_at - start, "seen_after_cut": sharee.disconnected_at - cut_done}


def ms(values, p) -> str:
    return f"{percentile(values, p) * 1000:.0f}"


def main() -> int:
    worker_log = tempfile.TemporaryFile("w+")
    with pipeline("live_revocation") as start_worker, tempfile.TemporaryDirectory() as certs:
        from django.conf import settings

        from authz.tokens import rotation
        from devices.models import Device, DeviceType, Membership, Tenant, User

        rotation.rotate(actor=None)  # a signing key, published to the bench table
        iot = LocalIotThread(lambda_env(), certs, access_key_id=settings.AWS_ACCESS_KEY_ID)
        try:
            os.environ["IOT_DATA_ENDPOINT_URL"] = f"http://127.0.0.1:{iot.iot.ports['http']}"
            settings.IOT_ENDPOINT = f"localhost:{iot.iot.ports['tls']}"
            start_worker(worker_log)
            tenant = Tenant.objects.create(name="Live", slug="live")
            kind = DeviceType.objects.create(tenant=tenant, name="Lock", slug="lock")
            owner = User.objects.create(email="owner@live.test")
            people = User.objects.bulk_create([User(email=f"u{i}@live.test") for i in range(REVOCATIONS)])
            Membership.objects.bulk_create([Membership(tenant=tenant, user=u) for u in [owner, *people]])
            device = Device.objects.create(tenant=tenant, owner=owner, device_type=kind, name="Front door")
            # The authorizer prints a JSON line per decision (its CloudWatch log): not the bench's output.
            with contextlib.redirect_stdout(io.StringIO()):
                runs = [one_revocation(owner=owner, device=device, grantee=person, port=iot.iot.ports["mqtt"])
                        for person in people]
        finally:
            iot.stop()

    rows = []
    for label, key in (("service call (revoke_share)", "call"), ("call → snapshot written", "written"),
                       ("snapshot written → cut recorded done", "cut"), ("call → client sees the disconnect", "seen"),
                       ("cut recorded done → client sees it", "seen_after_cut")):
        values = [run[key] for run in runs]
        rows.append((label, ms(values, 50), ms(values, 95), f"{max(values) * 1000:.0f}"))
    seen = [run["seen"] for run in runs]
    verdict = "met" if percentile(seen, 95) * 1000 < GOAL_P95_MS else "missed"
    table = md_table(["revocation → disconnect", "p50 ms", "p95 ms", "max ms"], rows)
    text = (f"Live revocation, {REVOCATIONS} revocations, one sharee each, paho MQTT 5 to local_iot "
            f"({PIPELINE_SETUP}); goal p95 < {GOAL_P95_MS} ms: {verdict}\n\n{table}")
    print(text)
    write_results("live_revocation_bench", text, {"setup": PIPELINE_SETUP, "revocations": REVOCATIONS,
                                                  "table": table, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
