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

    def __init__(self, lambda_env: dict[str, str], *, time_scale: float = 1.0, cert_dir=None, **options):
        from local_iot.server import LocalIot

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="local_iot", daemon=True)
        self._thread.start()
        self.iot = LocalIot(lambda_env=lambda_env, hosts=["127.0.0.1"], mqtt_port=0, tls_port=0, http_port=0,
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
