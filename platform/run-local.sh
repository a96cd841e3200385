#!/usr/bin/env bash
# `make run`: the whole stack on one machine, with demo data.
#   moto DynamoDB server → table → demo data → snapshots → Celery worker, Celery beat
#   → local AWS IoT Core (docs/local-iot.md) → the demo's simulated devices → web console.
# Redis is the broker when it answers; otherwise a folder under build/ is (slower, same tasks).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
MOTO_PORT=${MOTO_PORT:-8001}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
export DYNAMODB_ENDPOINT_URL=${DYNAMODB_ENDPOINT_URL:-http://127.0.0.1:$MOTO_PORT}
# The unsigned authorizer's name: Django issues compact credentials naming it,
# and local_iot answers to it (docs/local-iot.md#two-authorizers).
export IOT_COMPACT_AUTHORIZER_NAME=${IOT_COMPACT_AUTHORIZER_NAME:-devshare-compact}
mkdir -p build

if [ -z "${CELERY_BROKER_URL:-}" ]; then
    if $PY -c "import os, redis; redis.Redis.from_url(os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/0'), socket_connect_timeout=1).ping()" 2>/dev/null; then
        echo "Broker: Redis (${REDIS_URL:-redis://127.0.0.1:6379/0})"
    else
        export CELERY_BROKER_URL=filesystem://
        echo "Broker: Redis is not answering; using the embedded folder broker in build/broker"
    fi
fi

trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

if ! $PY -c "import urllib.request, os; urllib.request.urlopen(os.environ['DYNAMODB_ENDPOINT_URL'], timeout=1)" 2>/dev/null; then
    .venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >build/moto.log 2>&1 &
    for _ in $(seq 50); do
        $PY -c "import socket; socket.create_connection(('127.0.0.1', $MOTO_PORT), 0.2)" 2>/dev/null && break
        sleep 0.2
    done
fi
$PY manage.py ensure_dynamodb_table
$PY manage.py seed_demo
$PY manage.py ensure_admin --print
# moto keeps nothing between runs, so push every snapshot, not only lagging ones.
$PY manage.py sync_snapshots --all
# First run: bootstraps signing slot A. Later runs: publishes the key item again (moto forgot it).
$PY manage.py signing_keys rotate

# Worker and beat are separate processes, as in production (platform/systemd/),
# and each is started again if it exits, as systemd's Restart=always would.
supervise() {
    local log=$1 child=
    shift
    # Stopping `make run` stops the process too, not only this loop.
    trap 'kill $child 2>/dev/null; wait $child 2>/dev/null; exit 0' TERM INT
    while true; do
        "$@" >>"$log" 2>&1 &
        child=$!
        wait $child || true
        echo "$(date '+%F %T') $* exited; restarting in 2 s" >>"$log"
        sleep 2
    done
}
supervise build/worker.log $PY -m celery -A config.celery_app worker --pool threads --concurrency 4 \
    --without-gossip --without-mingle --without-heartbeat --loglevel INFO &
supervise build/beat.log $PY -m celery -A config.celery_app beat --schedule build/celerybeat-schedule \
    --loglevel INFO &

# The local AWS IoT Core, with the Lambda's settings from Django's; IOT_ENDPOINT
# (config/settings/local.py) points the credentials API at its TLS port.
: >build/local_iot.log
supervise build/local_iot.log $PY manage.py run_local_iot -- --compact-authorizer-name "$IOT_COMPACT_AUTHORIZER_NAME" &
IOT_READY=
for _ in $(seq 100); do
    grep -q '^local_iot ready ' build/local_iot.log 2>/dev/null && IOT_READY=1 && break
    sleep 0.2
done
if [ -n "$IOT_READY" ]; then
    # What it printed after its ready line: a table of its URLs.
    IOT_URLS=$(sed -n '/^local_iot ready /,$p' build/local_iot.log | tail -n +2 | sed 's/^/                     /')
    # The demo's devices connect to it with device tokens of their own (docs/local-iot.md).
    if [ "${DEVICES:-1}" != 0 ]; then
        supervise build/devices.log $PY manage.py simulate_devices &
    fi
else
    IOT_URLS="                     not ready after 20 s; see build/local_iot.log"
fi

# Commands typed in another shell reach this moto only if told where it is.
CMD=".venv/bin/python manage.py"
[ "$DYNAMODB_ENDPOINT_URL" = "http://127.0.0.1:8001" ] || CMD="DYNAMODB_ENDPOINT_URL=$DYNAMODB_ENDPOINT_URL $CMD"

cat <<MSG

  Devshare console:  http://$HOST:$PORT/admin/   (admin@devshare.local / devshare-admin)
  Tenant owner:      alice@demo.devshare.local / devshare-demo
  API docs:          http://$HOST:$PORT/api/docs/
  DynamoDB (moto):   $DYNAMODB_ENDPOINT_URL   worker and beat logs: build/worker.log, build/beat.log
  A snapshot:        $CMD show_snapshot bob@demo.devshare.local
  The authorizer:    $CMD authorize --as bob@demo.devshare.local --action publish --topic dev/demo-front-lock/in/unlock
  Local AWS IoT Core: CA build/local_iot/ca.pem, log build/local_iot.log; devices' log build/devices.log
$IOT_URLS

MSG
$PY manage.py runserver "$HOST:$PORT"
