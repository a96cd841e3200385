"""`python -m local_iot`: a local AWS IoT Core on loopback
(docs/local-iot.md#running-it).

The authorizer Lambda's settings come from this process's environment,
exactly as the Lambda reads them (DEVSHARE_TABLE, DEVSHARE_TOKEN_ISSUER, ...,
DEVSHARE_DYNAMODB_ENDPOINT_URL; docs/authorizer.md#settings).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys

from local_iot.dataplane import DEFAULT_ACCESS_KEY_ID
from local_iot.gateway import DEFAULT_AUTHORIZER_NAME, DEFAULT_COMPACT_AUTHORIZER_NAME
from local_iot.server import DEFAULT_PORTS, LOOPBACK, TOKEN_KEY_NAME, LocalIot


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535 (0: any free port)")
    return value


def _loopback(text: str) -> str:
    try:
        if ipaddress.ip_address(text).is_loopback:
            return text
    except ValueError:
        if text == "localhost":
            return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a loopback address: local_iot is for this machine only")


def _scale(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("the time scale must be above 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local_iot",
        description="A local stand-in for AWS IoT Core: MQTT 3.1.1 and 5 over TCP, TLS (ALPN mqtt) and "
                    "WebSockets, HTTPS publish, an iot-data shaped data plane and Device Shadows, with the "
                    "custom authorizer played by the real lambda_bridge handler. The Lambda's settings are read "
                    "from the environment as the Lambda reads them (DEVSHARE_TABLE, DEVSHARE_TOKEN_ISSUER, "
                    "DEVSHARE_TOKEN_AUDIENCE, DEVSHARE_AWS_ACCOUNT_ID, AWS_REGION, DEVSHARE_IOT_REGION, "
                    "DEVSHARE_DYNAMODB_ENDPOINT_URL, ...). See docs/local-iot.md.",
        epilog="When ready it prints one line 'local_iot ready {json}' (the URLs and the CA file), then a table.")
    p.add_argument("--host", action="append", type=_loopback, metavar="ADDRESS",
                   help=f"Loopback address to listen on; repeatable (default: {' and '.join(LOOPBACK)}).")
    p.add_argument("--mqtt-port", type=_port, default=DEFAULT_PORTS["mqtt"], metavar="PORT",
                   help="MQTT over TCP (default: %(default)s; 0: any free port).")
    p.add_argument("--tls-port", type=_port, default=DEFAULT_PORTS["tls"], metavar="PORT",
                   help="TLS, as AWS's port 443: MQTT with ALPN mqtt, MQTT over WSS at /mqtt, HTTPS publish and "
                        "the data plane (default: %(default)s).")
    p.add_argument("--http-port", type=_port, default=DEFAULT_PORTS["http"], metavar="PORT",
                   help="Plain HTTP: MQTT over WS at /mqtt and the data plane (default: %(default)s).")
    p.add_argument("--cert-dir", default="build/local_iot", metavar="DIR",
                   help="Where the local CA (ca.pem) and the server certificate are made and reused "
                        "(default: %(default)s).")
    p.add_argument("--time-scale", type=_scale, default=1.0, metavar="FACTOR",
                   help="Multiplies every lifetime (refresh, disconnect, keep-alive); 0.01 makes 300 s last 3 s "
                        "(default: %(default)s).")
    p.add_argument("--authorizer-name", default=DEFAULT_AUTHORIZER_NAME, metavar="NAME",
                   help="The signed custom authorizer (signing on: platform tokens with their signature), as "
                        "clients name it in x-amz-customauthorizer-name (default: %(default)s).")
    p.add_argument("--compact-authorizer-name", default=DEFAULT_COMPACT_AUTHORIZER_NAME, metavar="NAME",
                   help="The unsigned custom authorizer (signing disabled: compact device tokens), backed by the "
                        "same handler (default: %(default)s).")
    p.add_argument("--token-key-name", default=None, metavar="NAME",
                   help=f"The authorizer's token key name (default: DEVSHARE_TOKEN_KEY_NAME, else {TOKEN_KEY_NAME}).")
    p.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID, metavar="ID",
                   help="The access key id iot-data callers (boto3, the AWS CLI) sign with, with any secret; a "
                        "request signed under another id is refused. There is no IAM here (default: %(default)s).")
    return p


async def run(args: argparse.Namespace, env) -> None:
    iot = LocalIot(lambda_env=env, hosts=args.host or list(LOOPBACK), mqtt_port=args.mqtt_port,
                   tls_port=args.tls_port, http_port=args.http_port, cert_dir=args.cert_dir,
                   time_scale=args.time_scale, authorizer_name=args.authorizer_name,
                   compact_authorizer_name=args.compact_authorizer_name, token_key_name=args.token_key_name,
                   access_key_id=args.access_key_id)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    await iot.start()
    try:
        ready = {**iot.urls(), "ports": iot.ports, "hosts": iot.hosts, "authorizers": iot.authorizers(),
                 "token_key_name": iot.gateway.token_key_name}
        print("local_iot ready " + json.dumps(ready, separators=(",", ":")), flush=True)
        print(iot.table(), flush=True)
        await stopping.wait()
    finally:
        await iot.stop()


def main(argv=None) -> int:
    options = parser()
    args = options.parse_args(argv)
    if args.authorizer_name == args.compact_authorizer_name:
        options.error("--authorizer-name and --compact-authorizer-name must differ: AWS keeps one authorizer "
                      "per name, signed or not")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("local_iot.websocket").setLevel(logging.WARNING)  # one line per open and close: noise
    try:
        asyncio.run(run(args, dict(os.environ)))
    except OSError as exc:
        print(f"local_iot: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
