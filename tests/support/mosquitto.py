"""A Mosquitto broker of the test's own: the reference MQTT server the
browser harness is checked against (docs/testing.md#mqttjs-in-chromium).

Listeners on free loopback ports, chosen here, never the system broker's 1883:
plain MQTT, MQTT over WebSockets, and WebSockets over TLS when a certificate
is given. Anonymous clients are allowed unless asked otherwise; no persistence. Django-free.
"""
import getpass
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port, listening

MOSQUITTO = "/usr/sbin/mosquitto"


class OwnMosquitto:
    """`with OwnMosquitto(tls=(cert, key)) as broker:` → broker.mqtt_port,
    broker.ws_port and (with tls) broker.wss_port, all on 127.0.0.1.
    anonymous=False refuses every client (there are no passwords); `acl`
    lines (e.g. "topic read harness/#") limit what anonymous clients may do."""

    def __init__(self, *, tls: tuple[Path, Path] | None = None, anonymous: bool = True,
                 acl: list[str] | None = None):
        self.tls, self.anonymous, self.acl = tls, anonymous, acl
        self.mqtt_port, self.ws_port = free_port(), free_port()
        self.wss_port = free_port() if tls else None
        self.process = None
        self._dir = None

    @staticmethod
    def available() -> bool:
        return shutil.which(MOSQUITTO) is not None

    def config(self) -> str:
        # Started as root, mosquitto would switch to the `mosquitto` user, which cannot read our files.
        lines = [f"user {getpass.getuser()}", "per_listener_settings false",
                 f"allow_anonymous {str(self.anonymous).lower()}", "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning",
                 f"listener {self.mqtt_port} 127.0.0.1", "protocol mqtt",
                 f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
        if self.acl is not None:
            acl = Path(self._dir.name) / "acl"
            acl.write_text("\n".join(self.acl) + "\n")
            lines.insert(2, f"acl_file {acl}")
        if self.tls:
            cert, key = self.tls
            lines += [f"listener {self.wss_port} 127.0.0.1", "protocol websockets",
                      f"certfile {cert}", f"keyfile {key}"]
        return "\n".join(lines) + "\n"

    def start(self) -> "OwnMosquitto":
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(self.config())
        self.log = Path(self._dir.name) / "mosquitto.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        ports = [p for p in (self.mqtt_port, self.ws_port, self.wss_port) if p]
        deadline = time.monotonic() + 15
        while not all(map(listening, ports)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.log.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"mosquitto did not start on {ports}: {output}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "OwnMosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
