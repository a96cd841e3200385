"""A local_iot Broker, with the data plane in front of it, behind real
listeners (MQTT over TCP, HTTP) on a LoopThread, for tests that connect real
clients to them (docs/local-iot.md#the-broker, #the-data-plane). Clients are
admitted by `gateway` (a PolicyGateway, exact policies); an HTTPS publish is
authorized by `authorizer` (the real local_iot Gateway) when one is given.

`published` tells what the broker routed to a watching client: the data
plane's tests judge by it, as any subscriber would."""
from __future__ import annotations

from dataclasses import dataclass

from local_iot.broker import Broker
from local_iot.dataplane import DataPlane
from local_iot.shadow import Shadows
from tests.support.local_iot import RunningListeners
from tests.support.policy_gateway import ACCOUNT, REGION

# The shadow service's clock in the data plane's tests: every timestamp is this.
FROZEN_NOW = 1_700_000_000
FENCE = "fence"


class BrokerServer:
    def __init__(self, gateway, *, shadows=None, time_scale: float = 1.0, authorizer=None):
        self.broker = Broker(gateway=gateway, region=REGION, account=ACCOUNT, shadows=shadows,
                             time_scale=time_scale)
        self.plane = DataPlane(broker=self.broker, shadows=shadows or Shadows(), gateway=authorizer or gateway)
        self.listening = RunningListeners(self.broker, dataplane=self.plane)
        # run(coroutine) and call(function, *args) reach the loop the broker lives on.
        self.run, self.call = self.listening.run, self.listening.call
        self.port = self.listening.ports["mqtt"]
        self.http_url = f"http://127.0.0.1:{self.listening.ports['http']}"

    def stop(self) -> None:
        self.listening.stop(before=self.broker.close)


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def published(server: BrokerServer, watcher) -> list[Published]:
    """What the broker routed to `watcher` (a connected tests.support.mqtt_client.Client
    subscribed with retain_as_published) since the last call. A message to FENCE
    closes the list: the broker routes in order, so what came before it is all
    there was, with no waiting for silence."""
    server.run(server.broker.publish(FENCE, b""))
    found = []
    while (message := watcher.expect()).topic != FENCE:
        found.append(Published(message.topic, message.payload, message.qos, bool(message.retain)))
    return found
