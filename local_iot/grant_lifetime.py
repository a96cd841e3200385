"""A connection's grant over time (docs/local-iot.md#the-broker): the
gateway caches the policy for refreshAfterInSeconds, then is asked again;
the connection ends at the first answer's disconnectAfterInSeconds
(https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html).

Any failure at a refresh ends the connection, without its will: no grant
is left to judge the will by, and keeping the old grant would outlive the
authorizer's say.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Callable

from local_iot import reasons as r
from local_iot.connection import Connection
from local_iot.gateway import Gateway, Grant, Presented, Refused

log = logging.getLogger(__name__)


def start(conn: Connection, presented: Presented, grant: Grant, *, gateway: Gateway,
          end: Callable[..., None]) -> None:
    """The connection's timers, cancelled by `end`."""
    conn.timers.append(asyncio.get_running_loop().call_later(grant.disconnect_in, functools.partial(
        end, conn, r.CUSTOMAUTH_TTL_EXPIRATION, r.MAXIMUM_CONNECT_TIME, why="disconnectAfterInSeconds reached")))
    conn.timers.append(asyncio.create_task(_refresh(conn, presented, grant.refresh_in, gateway, end)))


async def _refresh(conn: Connection, presented: Presented, wait: float, gateway: Gateway,
                   end: Callable[..., None]) -> None:
    while not conn.ended:
        await asyncio.sleep(wait)
        try:
            grant = await gateway.authorize(presented, connection_id=conn.id)
        except Refused as refusal:
            log.info("connection %s: refresh refused: %s", conn.id, refusal)
            return end(conn, r.AUTH_ERROR, r.NOT_AUTHORIZED, will=False, why="the authorizer refused on refresh")
        except Exception:  # noqa: BLE001  (see the module's docstring)
            log.exception("connection %s: refresh failed", conn.id)
            return end(conn, r.SERVER_ERROR, r.UNSPECIFIED_ERROR, will=False, why="refresh failed")
        if not grant.can("iot:Connect", conn.client_id):
            return end(conn, r.AUTH_ERROR, r.NOT_AUTHORIZED, will=False, why="iot:Connect no longer allowed")
        conn.grant, wait = grant, grant.refresh_in
