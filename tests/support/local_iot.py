"""local_iot as tests use it: the authorizer's parameters as clients send
them, and a LocalIot running on its own event loop in a background thread
(docs/local-iot.md, docs/testing.md)."""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from urllib.parse import quote

AUTHORIZER = "devshare"


@dataclass(frozen=True)
class Signed:
    """One token and its signature, in each place a client puts them."""

    token: str
    signature: str
    key_name: str
    authorizer: str = AUTHORIZER

    def query(self, *, encode_signature: bool = True) -> str:
        """What the credentials API puts after `?` (authz/tokens/credentials.py).
        encode_signature=False: what the JS SDK's WebSocket builder sends
        (issue 14, 7a), so a `+` in the signature arrives as a space."""
        signature = quote(self.signature, safe="") if encode_signature else self.signature
        return (f"x-amz-customauthorizer-name={quote(self.authorizer, safe='')}"
                f"&{quote(self.key_name, safe='')}={quote(self.token, safe='')}"
                f"&x-amz-customauthorizer-signature={signature}")

    def username(self, prefix: str = "devshare", *, extra: str = "") -> str:
        """The MQTT username, as mqttUsername is built; `extra` is what an SDK
        appends (`&SDK=…&Platform=…`)."""
        return f"{prefix}?{self.query()}{extra}"

    def headers(self) -> dict[str, str]:
        """HTTPS publish with the parameters in headers (custom-auth.html)."""
        return {"x-amz-customauthorizer-name": self.authorizer, self.key_name.lower(): self.token,
                "x-amz-customauthorizer-signature": self.signature}


class RunningLocalIot:
    """A started local_iot.server.LocalIot on an event loop of its own, in a
    background thread, so synchronous clients (paho, awsiotsdk, boto3, curl in
    a subprocess) can talk to it from the test's thread."""

    def __init__(self, lambda_env: dict[str, str], *, time_scale: float = 1.0, cert_dir=None,
                 hosts=("127.0.0.1",), **options):
        from local_iot.server import LocalIot

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="local_iot", daemon=True)
        self._thread.start()
        self.iot = LocalIot(lambda_env=lambda_env, hosts=list(hosts), mqtt_port=0, tls_port=0, http_port=0,
                            cert_dir=cert_dir, time_scale=time_scale, **options)
        try:
            self.call(self.iot.start())
        except BaseException:
            self._stop_loop()
            raise

    def call(self, coroutine, timeout: float = 30.0):
        """Run a coroutine on local_iot's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def mqtt_port(self) -> int:
        return self.iot.ports["mqtt"]

    @property
    def tls_port(self) -> int:
        return self.iot.ports["tls"]

    @property
    def http_port(self) -> int:
        return self.iot.ports["http"]

    @property
    def ca_file(self) -> str:
        return str(self.iot.certificates.ca_file)

    @property
    def urls(self) -> dict[str, str]:
        return self.iot.urls()

    def stop(self) -> None:
        try:
            self.call(self.iot.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> RunningLocalIot:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ProbeBroker:
    """Stands where local_iot.broker.Broker stands, for the listener tests
    only: it records what each connection presented and the bytes of its
    first MQTT packet, answers it with a CONNACK (accepted) of the CONNECT's
    protocol level, then reads until the client leaves. Live MQTT tests use the
    real broker through RunningLocalIot."""

    CONNACK = b"\x20\x02\x00\x00"
    CONNACK_5 = b"\x20\x03\x00\x00\x00"  # MQTT 5 adds an empty property length

    def __init__(self):
        self.presented = []
        self.first_packets = []
        self.rest = []
        self.served = threading.Event()

    async def serve(self, reader, writer, *, presented) -> None:
        self.presented.append(presented)
        packet = await _read_mqtt_packet(reader)
        self.first_packets.append(packet)
        self.served.set()
        level = packet[packet.find(b"MQTT") + 4] if b"MQTT" in packet else 4
        writer.write(self.CONNACK_5 if level == 5 else self.CONNACK)
        await writer.drain()
        rest = b""
        while chunk := await reader.read(65536):
            rest += chunk
        self.rest.append(rest)


async def _read_mqtt_packet(reader) -> bytes:
    """One MQTT control packet: the fixed header byte, the variable-length
    remaining length (MQTT 3.1.1, 2.2.3), then that many bytes."""
    first = await reader.readexactly(1)
    length_bytes, length, shift = b"", 0, 0
    while True:
        byte = await reader.readexactly(1)
        length_bytes += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return first + length_bytes + await reader.readexactly(length)


class RunningListeners:
    """local_iot.listeners.Listeners on 127.0.0.1 (every kind on an ephemeral
    port) on an event loop of its own in a background thread."""

    def __init__(self, broker, *, dataplane=None, certificates=None):
        from local_iot.listeners import Listeners

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="listeners", daemon=True)
        self._thread.start()
        context = certificates.server_context(Listeners.tls_alpn()) if certificates else None
        self.listeners = Listeners(broker=broker, dataplane=dataplane, tls_context=context)
        self.servers = {}
        kinds = ("mqtt", "http", "tls") if certificates else ("mqtt", "http")
        for kind in kinds:
            self.servers[kind] = self.call(self.listeners.start(kind, "127.0.0.1", 0))
        self.ports = {kind: server.sockets[0].getsockname()[1] for kind, server in self.servers.items()}

    def call(self, coroutine, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        async def close():
            for server in self.servers.values():
                server.close()
            await self.listeners.close_connections()

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
