# twinflow developer entry points. Quick start: `make demo`, `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TW := $(VENV)/bin/twinflow
export UV_PYTHON_DOWNLOADS := never
export PYTHONUNBUFFERED := 1

.PHONY: setup stack-up stack-down stack-status migrate demo test lint bench-ingest clean-stack

$(VENV)/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --root-user-action=ignore "uv>=0.5"
	uv sync --frozen --extra dev --python python3
	@touch $@

setup: $(VENV)/.installed

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

test: setup
	$(TW) stack up --with-timescale-wasm
	$(TW) db migrate
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench-ingest: setup
	$(TW) stack up
	$(TW) db migrate
	$(PY) -m benchmarks.ingest --readings 1000000

clean-stack: setup
	$(TW) stack down --purge

# Protocol bridges: values/s per bridge process with the simulator as peer (docs/connectors.md).
.PHONY: bench-bridges simulate
bench-bridges: setup
	$(TW) stack up
	$(PY) -m benchmarks.bridges --protocol all --seconds 20

simulate: setup
	$(TW) stack up
	$(TW) simulate --mapping config/plant.toml $(SIM_ARGS)

