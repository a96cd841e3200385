"""How long a connection may wait for its client's next bytes
(docs/local-iot.md#the-broker): the whole CONNECT within the connect
timeout, then a packet within 1.5 × the keep-alive, as AWS closes after
(https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits).

Only time spent waiting to read counts, never time spent handling what
was read (an authorizer call, a slow consumer's drain).

One timer per connection, not one per read: a timeout around every read
(asyncio.wait_for) pushed and cancelled a timer for every packet. Here a
read only records when it began; the timer, when it fires, either finds
the deadline passed or sets itself for the new one. Deadlines only move
later, except when CONNECT ends the connect timeout, and then the timer
is moved once.
"""
from __future__ import annotations

import asyncio
from typing import Callable


class ReadDeadline:
    def __init__(self, loop: asyncio.AbstractEventLoop, connect_by: float, expired: Callable[[], None]):
        self._loop, self._expired = loop, expired
        self._connect_by = connect_by  # loop time; until `connected`, the deadline for every read
        self._timeout: float | None = None  # seconds per read once connected
        self._reading_since: float | None = None  # loop time the pending read began; None while handling
        self._timer = loop.call_at(connect_by, self._check)

    def connected(self, timeout: float) -> None:
        """CONNECT accepted: from the next read on, each may wait `timeout` seconds."""
        self._timeout = timeout

    def reading(self) -> None:
        """A read begins."""
        now = self._loop.time()
        self._reading_since = now
        due = self._due()
        if due < self._timer.when():  # only after CONNECT, or when the timeout shrank
            self._set(due)

    def handling(self) -> None:
        """The read returned; what it brought is being handled."""
        self._reading_since = None

    def cancel(self) -> None:
        self._timer.cancel()

    def _due(self) -> float:
        if self._timeout is None:
            return self._connect_by
        return self._reading_since + self._timeout

    def _set(self, when: float) -> None:
        self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if self._reading_since is None:
            # Handling, not waiting: nothing can be late yet. Look again later; a read
            # that begins in the meantime moves the timer if its deadline is sooner.
            self._set(now + (self._timeout or 1.0))
            return
        due = self._due()
        if now >= due:
            self._expired()
        else:
            self._set(due)
