"""The Celery application; tasks are discovered in the Django apps."""
import os

import kombu.transport
import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


class _RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, failing like a lost connection when it outlives its connection.

    When Redis drops, the worker's consumer detaches the broken connection's
    transport and reconnects. Channels of the old connection are still used
    afterwards: closing it restores unacknowledged messages, and a task that
    finishes later acknowledges its message. Each then builds a client from
    the detached transport and raises `AttributeError: 'NoneType' object has
    no attribute 'hostname'`, which Celery treats as unrecoverable: the worker
    exits. As a connection error it is handled where it belongs: logged, and
    the message stays in Redis's unacked set, from which the transport
    restores it after its visibility timeout (pushes are idempotent, and the
    reconciler re-queues any push that lags anyway).
    """

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("this broker connection was closed after a connection loss")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    Channel = _RedisChannel


# redis:// and rediss:// broker URLs use the transport above, in every process.
for _scheme in ("redis", "rediss"):
    kombu.transport.TRANSPORT_ALIASES[_scheme] = f"{__name__}:RedisTransport"

app = Celery("devshare")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
