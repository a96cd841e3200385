"""An asyncio event loop on a background thread, for tests whose clients
are synchronous (paho, awsiotsdk, boto3, curl) while the servers they talk
to (local_iot's broker, listeners and data plane) are asyncio
(docs/testing.md). Every server a test starts runs on one of these."""
from __future__ import annotations

import asyncio
import threading

WAIT = 30.0  # seconds a call to the loop may take before the test fails


class LoopThread:
    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout: float = WAIT):
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function, *args):
        """Call a plain function on the loop (the objects living there are not thread-safe)."""

        async def call():
            return function(*args)

        return self.run(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
