"""local_iot as tests use it (docs/local-iot.md, docs/testing.md#live-mqtt):
tokens and the authorizer's parameters as clients send them, the real
authorizer handler with what it was asked kept, the whole of local_iot or
only its listeners running on a LoopThread, and the probe that stands for
the broker in the listeners' own tests."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from urllib.parse import quote

from tests.support.event_loop import LoopThread
from tests.support.lambda_env import KEY_NAME

AUTHORIZER = "devshare"
LAMP = "d-lamp00000001"  # the thing the cold-started authorizer's user 7 controls (tests/local_iot/conftest.py)


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


def signed(fn, *, key: str = "a", sign_with: str | None = None, **claims) -> Signed:
    """A token from `fn` (tests/support/authorizer.py Lambda) for user 7 of tenant
    1 unless `claims` say otherwise, signed with slot `sign_with` (default: `key`)."""
    token = fn.token(key=key, **claims)
    return Signed(token, fn.keys[sign_with or key].sign(token), KEY_NAME)


class RunningLocalIot:
    """A started local_iot.server.LocalIot on a LoopThread, so synchronous
    clients (paho, awsiotsdk, boto3, curl in a subprocess) can talk to it
    from the test's thread."""

    def __init__(self, lambda_env: dict[str, str], *, time_scale: float = 1.0, cert_dir=None,
                 hosts=("127.0.0.1",), **options):
        from local_iot.server import LocalIot

        self.thread = LoopThread("local_iot")
        self.iot = LocalIot(lambda_env=lambda_env, hosts=list(hosts), mqtt_port=0, tls_port=0, http_port=0,
                            cert_dir=cert_dir, time_scale=time_scale, **options)
        try:
            self.thread.run(self.iot.start())
        except BaseException:
            self.thread.stop()
            raise

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
            self.thread.run(self.iot.stop())
        finally:
            self.thread.stop()

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
    port) in front of `broker` and `dataplane`, all on one LoopThread. `run`
    and `call` reach that loop, where the broker and the data plane live."""

    def __init__(self, broker, *, dataplane=None, certificates=None):
        from local_iot.listeners import Listeners

        self.thread = LoopThread("listeners")
        self.run, self.call = self.thread.run, self.thread.call
        context = certificates.server_context(Listeners.tls_alpn()) if certificates else None
        self.listeners = Listeners(broker=broker, dataplane=dataplane, tls_context=context)
        self.servers = {}
        kinds = ("mqtt", "http", "tls") if certificates else ("mqtt", "http")
        for kind in kinds:
            self.servers[kind] = self.run(self.listeners.start(kind, "127.0.0.1", 0))
        self.ports = {kind: server.sockets[0].getsockname()[1] for kind, server in self.servers.items()}

    def stop(self, *, before=None) -> None:
        """Close the listeners and their connections; `before`, a coroutine
        function, runs first on the loop (the broker's close)."""

        async def close():
            if before is not None:
                await before()
            for server in self.servers.values():
                server.close()
            await self.listeners.close_connections()

        try:
            self.run(close())
        finally:
            self.thread.stop()


class RecordingHandler:
    """The real authorizer handler, with every event it was given and every
    answer it gave kept in order, so a test sees what the gateway asked."""

    def __init__(self, handler):
        self.handler, self.events, self.answers = handler, [], []
        self._changed = threading.Condition()

    def __call__(self, event, context):
        self.events.append(event)
        answer = self.handler(event, context)
        with self._changed:
            self.answers.append(answer)
            self._changed.notify_all()
        return answer

    def wait_for(self, count: int, timeout: float = 20.0) -> bool:
        """Whether `count` answers were given within the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.answers) >= count, timeout)


def lambda_reasons(capsys) -> list[str]:
    """The reasons of the Lambda's log lines an in-process local_iot printed
    since the last call (the handler logs to standard output, as to CloudWatch)."""
    out = capsys.readouterr().out.splitlines()
    return [json.loads(line)["reason"] for line in out if line.startswith('{"event":"authorize"')]
