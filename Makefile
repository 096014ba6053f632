# The two commands a newcomer needs: `make demo` and `make test`. Both build the environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export UV_COMPILE_BYTECODE := 1
# Airflow reads its home from here; keep it inside the checkout so nothing leaks into ~/airflow.
export AIRFLOW_HOME ?= $(CURDIR)/.tongban/airflow

.PHONY: venv demo test test-fast bench airflow clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock -e .
	touch $@

demo: venv
	$(BIN)/tongban sandbox demo

# The suite on three parallel workers (most tests wait on servers, brokers and subprocesses, not on the CPU), then
# the tests marked `serial` alone: they restart the shared RabbitMQ and PostgreSQL under everything else.
# --maxschedchunk 2: a worker is handed two tests at a time, not a quarter of its share at the start (which put
# every long test, sorted first by tests/conftest.py, on the first worker, one after another).
test: venv
	$(BIN)/python -m pytest -q -n 3 --maxschedchunk 2 -m "not serial"
	$(BIN)/python -m pytest -q -m serial

# The inner loop: unit tests only (no broker, no database server, no sandbox servers); seconds, not minutes.
test-fast: venv
	$(BIN)/python -m pytest -q tests/unit

# Airflow on this machine, its DAGs pointed at `tongban sandbox up` (README: watching the DAG runs in the UI).
airflow: venv
	scripts/airflow-standalone --sandbox

bench: venv
	$(BIN)/python benchmarks/e2e.py

clean:
	rm -rf $(VENV) .tongban
