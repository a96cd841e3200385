"""A local_iot Broker served over real TCP on loopback, on an event loop in a
background thread, for tests that connect real MQTT clients to it
(docs/local-iot.md#the-broker)."""
from __future__ import annotations

import asyncio
import threading

from local_iot.broker import Broker
from local_iot.gateway import Presented
from tests.support.policy_gateway import ACCOUNT, REGION


class BrokerServer:
    def __init__(self, gateway, *, shadows=None, time_scale: float = 1.0):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="broker", daemon=True)
        self._thread.start()
        self.broker = Broker(gateway=gateway, region=REGION, account=ACCOUNT, shadows=shadows,
                             time_scale=time_scale)
        self._server = self.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        host, port = writer.get_extra_info("peername")[:2]
        await self.broker.serve(reader, writer, presented=Presented(protocol="mqtt", tls=False, source_ip=host))

    def run(self, coroutine, timeout: float = 10):
        """Run a coroutine on the broker's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function, *args):
        """Call a plain broker method on the broker's loop (it is not thread-safe)."""

        async def call():
            return function(*args)

        return self.run(call())

    def stop(self) -> None:
        self.run(self.broker.close())
        self._server.close()
        self.run(self._server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
