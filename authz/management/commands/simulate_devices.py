"""`manage.py simulate_devices`: the demo's devices, alive against the local
AWS IoT Core (docs/local-iot.md#the-demos-devices). Each gets device tokens
of its own, issued as `manage.py authorize --device` issues them (by the
operator, recorded and audited), of the kind `demo_devices.credential_for`
says, and behaves as authz/demo_devices.py says. Runs until interrupted."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from authz import demo_devices
from authz.tokens import credentials
from devices import audit
from devices.management.commands.seed_demo import DEVICES
from devices.models import Device

DEFAULT_CA = Path("build") / "local_iot" / "ca.pem"  # where `make run`'s local_iot writes its CA
# One issuance at a time: `make run` defaults to SQLite, which takes one writer.
ISSUING = threading.Lock()


class Command(BaseCommand):
    help = "Run the demo's devices as simulated devices against the local AWS IoT Core."

    def add_arguments(self, parser):
        parser.add_argument("--thing", action="append", dest="things",
                            help="A thing name to simulate; repeat for more (default: the demo's devices).")
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds between telemetry messages.")
        parser.add_argument("--ca-file", default=None,
                            help=f"The local CA certificate (default: {DEFAULT_CA} under the project).")

    def handle(self, *args, things=None, interval=5.0, ca_file=None, **options):
        names = things or [thing for thing, *_ in DEVICES]
        found = {d.thing_name: d for d in Device.objects.select_related("device_type", "tenant")
                 .filter(thing_name__in=names)}
        missing = sorted(set(names) - set(found))
        if missing:
            raise CommandError(f"No such device: {', '.join(missing)} (run `manage.py seed_demo`).")
        ca = Path(ca_file) if ca_file else Path(settings.BASE_DIR) / DEFAULT_CA
        if not ca.exists():
            raise CommandError(f"No CA certificate at {ca}: is local_iot running (manage.py run_local_iot)?")
        endpoint = demo_devices.Endpoint.parse(settings.IOT_ENDPOINT, str(ca))
        simulated = [demo_devices.SimulatedDevice(thing=name, kind=found[name].device_type.slug,
                                                  issue=_issuer(found[name]), endpoint=endpoint, interval=interval)
                     for name in names]
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        for device in simulated:
            device.start()
        self.stdout.write(f"Simulating {len(simulated)} devices against {endpoint.host}:{endpoint.port}: "
                          + ", ".join(f"{name} ({demo_devices.credential_for(name)})" for name in names))
        stopping.wait()
        for device in simulated:
            device.stop()


def issued_for(device: Device) -> demo_devices.Issued:
    """A fresh device token of the device's kind of credential, as the operator."""
    with audit.origin("command"):
        creds = credentials.issue_device_credentials(actor=None, device=device, by_operator=True,
                                                     credential=demo_devices.credential_for(device.thing_name))
    return demo_devices.Issued.of(creds, timezone.now())


def _issuer(device: Device):
    """A fresh device token each call, from the device's own thread."""

    def issue() -> demo_devices.Issued:
        close_old_connections()  # a long-lived thread: never reuse a connection the server closed
        with ISSUING:
            return issued_for(device)

    return issue
