"""LocalIot: the gateway, the broker, the shadow service, the data plane and
the three listeners, started and stopped together (docs/local-iot.md#running-it).

Usable in-process (tests start one on ephemeral ports, tests/support/local_iot.py)
and from `python -m local_iot` (local_iot/__main__.py).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import Mapping

from local_iot import certs
from local_iot.broker import Broker
from local_iot.dataplane import DEFAULT_ACCESS_KEY_ID, DataPlane
from local_iot.gateway import DEFAULT_AUTHORIZER_NAME, DEFAULT_COMPACT_AUTHORIZER_NAME, Gateway
from local_iot.listeners import Listeners
from local_iot.shadow import Shadows

log = logging.getLogger("local_iot.server")

LOOPBACK = ("127.0.0.1", "::1")
DEFAULT_PORTS = {"mqtt": 18830, "tls": 18443, "http": 18080}
TOKEN_KEY_NAME = "devshare-token"  # noqa: S105 - a parameter name, not a secret


class LocalIot:
    def __init__(self, *, lambda_env: Mapping[str, str], hosts=LOOPBACK, mqtt_port: int = DEFAULT_PORTS["mqtt"],
                 tls_port: int = DEFAULT_PORTS["tls"], http_port: int = DEFAULT_PORTS["http"],
                 cert_dir: Path | str | None = None, time_scale: float = 1.0,
                 authorizer_name: str = DEFAULT_AUTHORIZER_NAME,
                 compact_authorizer_name: str = DEFAULT_COMPACT_AUTHORIZER_NAME,
                 token_key_name: str | None = None, handler=None, access_key_id: str = DEFAULT_ACCESS_KEY_ID):
        if not hosts:
            raise ValueError("give at least one host to listen on")
        if not time_scale > 0:
            raise ValueError("time_scale must be above 0")
        self.lambda_env = dict(lambda_env)
        self.hosts = list(hosts)
        self.requested_ports = {"mqtt": mqtt_port, "tls": tls_port, "http": http_port}
        self.cert_dir = cert_dir
        self.time_scale = time_scale
        # The authorizer's token key name is its own setting on AWS; the
        # deploy sets it and the Lambda's from one parameter, so the Lambda's
        # is the default here.
        key_name = token_key_name or self.lambda_env.get("DEVSHARE_TOKEN_KEY_NAME", "").strip() or TOKEN_KEY_NAME
        self.gateway = Gateway(lambda_env=self.lambda_env, authorizer_name=authorizer_name,
                               compact_authorizer_name=compact_authorizer_name, token_key_name=key_name,
                               time_scale=time_scale, handler=handler)
        self.shadows = Shadows()
        self.broker = Broker(gateway=self.gateway, region=self.gateway.region, account=self.gateway.account,
                             shadows=self.shadows, time_scale=time_scale)
        # iot-data callers (boto3) sign with this access key id; any secret.
        self.dataplane = DataPlane(broker=self.broker, shadows=self.shadows, gateway=self.gateway,
                                   access_key_id=access_key_id)
        self.certificates: certs.Certificates | None = None
        self.listeners: Listeners | None = None
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        self.certificates = await asyncio.to_thread(certs.ensure, self.cert_dir)
        context = self.certificates.server_context(Listeners.tls_alpn())
        self.listeners = Listeners(broker=self.broker, dataplane=self.dataplane, tls_context=context)
        try:
            for kind, port in self.requested_ports.items():
                self.ports[kind] = await self._listen(kind, port)
        except BaseException:
            await self.stop()
            raise

    async def _listen(self, kind: str, port: int) -> int:
        """Listen on every host; port 0 takes the port the first host was
        given for the others too, so each kind has one port."""
        for host in self.hosts:
            server = await self.listeners.start(kind, host, port)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        await self.broker.close()
        if self.listeners is not None:
            await self.listeners.close_connections()
        self.gateway.close()

    def urls(self) -> dict[str, str]:
        """Where each protocol is reached, and the CA file clients trust."""
        host = _url_host(self.hosts[0])
        mqtt, tls, plain = self.ports["mqtt"], self.ports["tls"], self.ports["http"]
        return {
            "mqtt": f"mqtt://{host}:{mqtt}",
            "mqtts": f"mqtts://{host}:{tls}",
            "wss": f"wss://{host}:{tls}/mqtt",
            "https": f"https://{host}:{tls}",
            "ws": f"ws://{host}:{plain}/mqtt",
            "http": f"http://{host}:{plain}",
            "ca_file": str(self.certificates.ca_file.resolve()) if self.certificates else "",
        }

    def authorizers(self) -> dict[str, str]:
        """Which name clients put in x-amz-customauthorizer-name for each authorizer."""
        return {"signed": self.gateway.authorizer_name, "unsigned": self.gateway.compact_authorizer_name}

    def table(self) -> str:
        """The same, for people."""
        urls = self.urls()
        rows = [
            ("MQTT over TCP", urls["mqtt"], "token in the username (mqttUsername)"),
            ("MQTT over TLS", urls["mqtts"], "ALPN mqtt, as AWS's port 443"),
            ("MQTT over WSS", urls["wss"], "a browser opens wssUrl"),
            ("HTTPS publish", urls["https"] + "/topics/{topic}", "authorizer headers or query"),
            ("MQTT over WS", urls["ws"], "local only: no TLS"),
            ("HTTP data plane", urls["http"], "iot-data shaped; local only"),
        ]
        width = max(len(r[1]) for r in rows)
        lines = [f"  {name:<16} {url:<{width}}  {note}" for name, url, note in rows]
        lines.append(f"  {'CA certificate':<16} {urls['ca_file']}")
        lines.append(f"  listening on {', '.join(self.hosts)}; token key {self.gateway.token_key_name!r}, "
                     f"time scale {self.time_scale:g}")
        lines.append(f"  authorizers: {self.gateway.authorizer_name!r} (signing on: platform tokens and their "
                     f"signature), {self.gateway.compact_authorizer_name!r} (signing disabled: compact device "
                     f"tokens, the MQTT password or the token key)")
        lines.append(f"  iot-data callers sign with access key id {self.dataplane.access_key_id!r} (any secret)")
        return "\n".join(lines)


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host
