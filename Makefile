# Two commands matter: `make run` (demo on embedded defaults) and `make test`.
# `make lambda-zip` builds the authorizer Lambda's deployment zip (docs/deploy.md).
PYTHON ?= python3.12
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint migrate demo clean bench lambda-zip

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --no-input -v 0

demo: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py ensure_admin --print

# Web console + API, a Celery worker, Celery beat, a local moto DynamoDB, the
# local AWS IoT Core (local_iot, loopback only) and the demo's simulated devices.
# `make run DEVICES=0` leaves the devices out.
DEVICES ?= 1
run: migrate
	@HOST=$(HOST) PORT=$(PORT) DEVICES=$(DEVICES) bash platform/run-local.sh

# MQTT.js for the browser tests, exactly as tests/browser/package-lock.json pins it;
# reinstalled when the lock file is newer than the install.
BROWSER_JS := tests/browser/node_modules/.package-lock.json

$(BROWSER_JS): tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Two pytest-xdist workers (docs/testing.md#speed); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed $(BROWSER_JS)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Every bench/*_bench.py against real servers (PostgreSQL from DATABASE_URL);
# tables are printed and written to bench/results/. `make bench BENCH=api` runs one.
bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH)

# build/authorizer.zip: lambda_bridge plus the PyJWT and cryptography wheels for
# Lambda's python3.12 on x86_64, at the pinned versions; the same inputs give
# the same bytes. Prints the size and sha256.
lambda-zip: $(VENV)/.installed
	$(PY) platform/build_lambda_zip.py

clean:
	rm -rf $(VENV) build db.sqlite3 .pytest_cache
