# twinflow developer entry points. Quick start: `make demo`, `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TW := $(VENV)/bin/twinflow
export UV_PYTHON_DOWNLOADS := never
export PYTHONUNBUFFERED := 1
# `make test` leaves out the benchmarks' harness checks (whole small benchmark runs: `make bench-harness`)
# and ends with its 30 slowest tests (where the suite's time goes).
PYTEST_ARGS ?= -m "not bench_harness" --durations=30
# Test files run side by side in this many worker processes (most integration tests wait on services, flows
# and timeouts rather than compute); `make test TEST_WORKERS=0` runs them one after another in one process.
TEST_WORKERS ?= 2
# Every protocol connector (optional for a `pip install twinflow`, connectors/extras.py).
PROTOCOL_EXTRAS := --extra opcua --extra modbus --extra sparkplug

.PHONY: setup interop-deps stack-up stack-down stack-status migrate demo test lint bench-ingest clean-stack browser

# --compile-bytecode: .pyc files for the installed packages, so every flow, bridge and CLI process starts
# fast even where PYTHONDONTWRITEBYTECODE=1 (imports of a models flow: 2.1 s -> 0.8 s here).
$(VENV)/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --root-user-action=ignore "uv>=0.5"
	uv sync --frozen --extra dev --extra build $(PROTOCOL_EXTRAS) --python python3 --compile-bytecode
	@touch $@

# Sparkplug B payload classes, compiled from the schema (never committed).
SPARKPLUG_PB2 := connectors/sparkplug/sparkplug_b_pb2.py
$(SPARKPLUG_PB2): connectors/sparkplug/sparkplug_b.proto $(VENV)/.installed
	bash scripts/sparkplug-proto.sh $(PY)

# Third-party device implementations for the interop tests (node-opcua, jsmodbus, sparkplug-payload).
INTEROP := tests/interop
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(VENV)/.installed $(SPARKPLUG_PB2)

interop-deps: $(INTEROP)/node_modules/.installed

# Headless Chromium for the browser tests (tests/api/test_web.py), from Debian: Playwright drives it with
# executable_path (Playwright's own browser download is not reachable here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

stack-up: setup
	$(TW) stack up $(STACK_ARGS)

stack-down: setup
	$(TW) stack down

stack-status: setup
	$(TW) stack status

migrate: stack-up
	$(TW) db migrate

demo: setup
	$(TW) stack up
	$(TW) db migrate
	$(TW) demo $(DEMO_ARGS)

lint: setup
	$(PY) -m ruff check .

test: setup interop-deps browser
	bash scripts/install-compose.sh
	$(TW) stack up --with-timescale-wasm
	$(TW) db migrate
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS) -n $(TEST_WORKERS) --dist loadgroup

bench-ingest: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.ingest --readings 1000000

clean-stack: setup
	$(TW) stack down --purge

# ----------------------------------------------------------------------------- ml benchmarks (docs/ml.md)
.PHONY: bench-skab bench-cmapss bench-ml-cost bench-generalisation
bench-skab: setup
	$(PY) -m benchmarks.skab

# Synthetic patterns (uni- and multivariate, several seeds) through `twinflow replay`, NAB-scored.
bench-generalisation: setup
	$(PY) -m benchmarks.generalisation

bench-cmapss: setup
	$(PY) -m benchmarks.cmapss

bench-ml-cost: setup
	$(PY) -m benchmarks.ml_cost
# Twin reconciliation operator throughput and memory for 10,000 twins (appends to benchmarks/RESULTS.md).
.PHONY: bench-reconcile
bench-reconcile: setup
	$(PY) -m benchmarks.reconcile --twins 10000 --rounds 30 --write-results
.PHONY: bench-alerts
bench-alerts: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.alerts --records 200000 --twins 50 --db-rows 50000

# End to end: the pipeline flow and the 4 separate flows vs the raw limit vs a naive reference, same data (benchmarks/RESULTS.md).
.PHONY: bench
bench: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.e2e --readings 200000 --twins 200
# The benchmarks' harnesses still run and report (small runs of e2e, flow_cpu, fleet, reconcile; no timing checks).
.PHONY: bench-harness
bench-harness: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m pytest -m bench_harness tests/integration/test_bench_harness.py
# Latency by the twins one pipeline process holds, at one rate, recovery on (docs/performance.md, Twins per process).
.PHONY: bench-fleet
bench-fleet: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.fleet --rate 2000 --twins 200 1000 2000 5000
	$(PY) -m benchmarks.fleet --rate 2000 --twins 200 1000 2000 5000 --telemetry-apart
# How long a clean stop of the pipeline flow takes by the twins one process holds (docs/operations.md, Stopping).
.PHONY: bench-stop
bench-stop: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.stop_time --twins 1000 5000 20000
# The idempotent telemetry write: the sink's COPY into the table (staging on duplicates) vs staging vs unnest.
.PHONY: bench-insert
bench-insert: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.insert_paths --rows 400000
# Security and reliability (docs/security.md)
.PHONY: test-security test-faults bench-faults
test-security: setup
	$(PY) -m pytest tests/security tests/integration/test_hostile_input.py tests/integration/test_desired_audit.py

test-faults: setup
	$(PY) -m pytest tests/faults

# The fused pipeline and the alerts flow through random faults (`--flow telemetry`: the ingest flow alone).
bench-faults: setup
	$(PY) -m benchmarks.faults --readings 200000 --faults 8
# Protocol bridges: values/s per bridge process with the simulator as peer (docs/connectors.md).
.PHONY: bench-bridges simulate
bench-bridges: setup
	$(TW) stack up
	$(PY) -m benchmarks.bridges --protocol all --seconds 20

simulate: setup
	$(TW) stack up
	$(TW) simulate --mapping config/plant.toml $(SIM_ARGS)

# Simulator fault detection: delay and false alarms per fault kind, live models + alerts (docs/ml.md).
.PHONY: bench-sim
bench-sim: setup
	$(PY) -m benchmarks.sim_detection --pumps 4 --compressors 4 --hours 6
# CPU per reading and output digest of the twin and models flows, optionally A/B against another checkout
# (BASE=/path/to/checkout; docs/performance.md).
.PHONY: bench-flow-cpu
bench-flow-cpu: setup
	$(PY) -m benchmarks.flow_cpu --readings 100000 $(if $(BASE),--baseline $(BASE) --repeat 2)
# HTTP API: GET /twins/{id} at 500 requests/s over 10,000 twins; SSE fan-out to 200 clients (docs/api.md).
.PHONY: bench-api
bench-api: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.api --twins 10000 --rate 500 --seconds 30 --clients 200 --changes 1000
# schemathesis (--checks all, every phase) over both OpenAPI documents against a live `twinflow serve`, seed 1
# (docs/api.md); not part of `make test` (about 20 minutes). schemathesis is a tool here, in its own venv.
SCHEMATHESIS_VERSION := 4.32.5
.venv-fuzz/.installed: Makefile
	python3 -m venv .venv-fuzz
	.venv-fuzz/bin/pip install --quiet "schemathesis==$(SCHEMATHESIS_VERSION)"
	@touch $@

.PHONY: api-fuzz
api-fuzz: setup .venv-fuzz/.installed
	$(TW) stack up
	$(TW) db migrate
	SCHEMATHESIS=.venv-fuzz/bin/schemathesis $(PY) -m pytest -p no:cacheprovider tests/api/fuzz_schemathesis.py $(PYTEST_ARGS)
